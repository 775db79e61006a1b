// Package rules turns a directory of YAML rule files into a compiled,
// immutable Ruleset (SPEC section 4), or into a sorted list of located
// problems.
//
// # Loading
//
// Every *.yaml file below the directory (at any depth; names starting with
// a dot are skipped) is parsed into a small positioned tree, so every
// problem can be reported as file:line:col. Files ending in _test.yaml
// hold rule tests (SPEC 5) and nothing else. All other files merge into one
// ruleset: an id defined twice, in one file or two, is an error.
//
// Loading never stops at the first problem: every section of every file is
// validated, every expression compiled, and the problems are returned
// together as an ErrorList sorted by file, line and column. Warnings (such
// as an action that no placement can reach) are listed too but do not
// reject the ruleset.
//
// # Expressions
//
// Conditions (when, segments, channel when, policy when), scores and
// content templates ({{ expr }}) are compiled once with expr. Each is
// compiled twice: first against a checking environment with precise
// function signatures and, when an attributes schema is declared, a typed
// customer, so that typos and type mismatches are reported at load time
// with their position inside the expression; then into the program that
// runs against Env. The second compile rewrites the expression for speed:
// customer.X and context.X become direct map lookups, segment("name")
// becomes an index, attribute defaults become `?? default`, so a decision
// never copies the customer's attributes; now.Hour() and now's other
// calendar methods (and .String() of Weekday and Month) become direct
// calls, where expr would call them through reflection.
//
// The common shapes of expressions (lookups, segment(), count() and sum()
// with literal arguments, and, or, not, ??, comparisons, arithmetic, a
// ternary between numbers, int() of a number, in over a constant list)
// are also compiled to Go closures (fast.go) that
// skip the VM's fixed cost per run. A closure never decides differently
// from the VM: on any value of a kind it does not handle it defers to the
// program, and TestFastMatchesVM compares the two on random customers.
// Arithmetic and comparisons pass float64s between closures, and a score
// that is always a number answers through Expr.FastNumber, so that no
// step boxes a number: the fast path allocates nothing per candidate.
// A condition's fast path is a small program (cond.go): its commonest
// tests (segment(), customer.X with or without its default, count(),
// sum() and days_since() compared with a literal, customer.X == "s") are
// instructions, and and, or and not are jumps between them; any other
// test is a closure. The attributes and
// the count(), sum() and days_since() calls the fast path reads are
// remembered for the decision (Env.attr, Env.call), by slots numbered at
// compile time. Attributes a store keeps encoded (AttrScanner) are placed
// by one pass over the customer's record at the first read, not searched
// for one by one, and a number among them is decoded without boxing it
// (AttrScanner.NumberAt, Env.attrNum). The closures are compiled last, in the order decisions
// run them, so that a placement's candidates' closures lie together in
// memory, and the conditions' programs are copied into one array in the
// same order (loader.buildGates). A placement's Gates hold what a decision
// reads of each candidate (schedule, condition, score, and a Guard of
// policies, caps and budget that actions with the same share), so that it
// reads an Action only for the candidates it selects.
//
// The version of a ruleset is a hash of its files' relative paths and
// contents: the same files give the same version wherever they live.
//
// # Invariants
//
//   - A Ruleset is never modified after Compile returns, apart from the
//     per-expression runtime error counters (atomic). It is shared by all
//     decisions and swapped whole on reload.
//   - Segment references form no cycle; every fallback names an action;
//     every placement's candidates are sorted by priority (desc), then id.
//   - Expressions reach nothing but their environment: no files, network,
//     environment variables or wall clock (the builtin now() is disabled;
//     rules use the now variable the caller fixes).
//
// This package imports no other package of the project.
package rules
