// Package store defines what nudge knows about a customer (the customer
// context) and the small interfaces through which it is read and written.
//
// A customer context has three parts:
//
//   - Attributes: a JSON object from upstream systems (shop, CRM), replaced
//     or merge-patched as a whole.
//   - Event aggregates: per event type, lifetime count, sum, first and last
//     time, plus bounded detail for windows: the most recent events exactly
//     (RecentMax of them) and per-day buckets for the last MaxDays days.
//     A window query is exact while the recent events cover it, and counts
//     whole UTC days beyond that (the partial oldest day is counted fully,
//     so a cap errs on the side of not contacting the customer).
//   - Contact history: one record per served action and per outcome the
//     customer gave, with its time and channel, oldest first, and a
//     summary of the outcomes given per action (Customer.Outcomes,
//     HasOutcome). Stores keep the contacts of the retention (the longest
//     window the rules use), pruning them lazily: the oldest may outlive it
//     by PruneSlack, so that pruning, which copies the history, is rare.
//     At most MaxContacts are kept per customer; beyond that the oldest
//     are dropped, so windows reaching back past them count too few.
//
// A contact names its action and channel with a Name, a number into one
// table of names shared by the process, so that a history holds no
// pointer: the garbage collector marks every cached customer in each
// cycle and skips a pointer-free array without reading it. Names are
// never freed; those that requests bring are bounded (MaxNames, NewName).
//
// Recording a contact costs the same whatever the length of the history:
// versions of a customer share the history's array and a record appends
// to the newest one (see Customer for the sharing rules).
//
// Times are Unix nanoseconds (int64) so the hot record stays compact and
// comparisons are integer compares.
//
// This package imports only the standard library: the engine, the rule
// tests and the Pebble-backed store all share these types.
package store
