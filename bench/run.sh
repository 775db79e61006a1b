#!/usr/bin/env bash
# bench/run.sh full|quick: the end-to-end benchmark behind `make bench` and
# `make bench-quick`. See README "Benchmarks".
#
#   1. Go micro-benchmarks (engine, rules, store, server handler), -benchmem;
#   2. builds nudge and nudge-bench, generates customers into a fresh data
#      directory (full: 1,000,000; quick: 100,000) and a 1,000-action ruleset;
#   3. for the demo storefront rules and the 1,000-action ruleset: serves
#      them, warms up, measures the ceiling server and nudge alternately in
#      closed loop (ceiling, nudge, ceiling, nudge), then nudge in open loop
#      at half its measured throughput; once nudge is stopped, the ceiling
#      alone in open loop at that same rate (the machine's floor);
#   4. event ingest (batches of 100, single events) and a decide run with a
#      32 MiB cache (far smaller than the working set), closed loop, then
#      open loop at half of it, and the ceiling alone at that rate;
#   5. the closed loops' decide requests through nudge's handler in process
#      (nudge-bench handler), with the CPU's caches warm and swept;
#   6. writes bench/results/<date>-<hash>[-quick].md, its SVG plots, and the
#      raw JSON results in the directory of the same name.
#
# Only 127.0.0.1 is used. Every wait is bounded; every process started here
# is stopped by its pid on exit. Overrides: BENCH_CUSTOMERS, BENCH_DURATION,
# BENCH_OPEN_DURATION (open-loop runs), BENCH_WARMUP, BENCH_CONNS,
# BENCH_BENCHTIME, BENCH_WORK (scratch directory), GO.
set -euo pipefail

mode=${1:-full}
case $mode in
full)
	customers=${BENCH_CUSTOMERS:-1000000}
	duration=${BENCH_DURATION:-10s}
	# Under load nudge collects garbage every 10 to 20 s, and a collection
	# makes its open-loop tail: an open-loop run long enough to hold one
	# or two says what a p99 is, a 10 s one whether it was lucky.
	openduration=${BENCH_OPEN_DURATION:-30s}
	warmup=${BENCH_WARMUP:-1s}      # before each measured run
	serverwarm=${BENCH_SERVERWARM:-20s} # once per server start: fills the cache
	benchtime=${BENCH_BENCHTIME:-1s}
	handlerruns=(--warmup 100000 --requests 20000) # nudge-bench handler
	suffix=""
	;;
quick)
	customers=${BENCH_CUSTOMERS:-100000}
	duration=${BENCH_DURATION:-2s}
	openduration=${BENCH_OPEN_DURATION:-2s}
	warmup=${BENCH_WARMUP:-500ms}
	serverwarm=${BENCH_SERVERWARM:-1s}
	benchtime=${BENCH_BENCHTIME:-100ms}
	handlerruns=(--warmup 10000 --requests 2000)
	suffix="-quick"
	;;
*)
	echo "usage: bench/run.sh full|quick" >&2
	exit 2
	;;
esac
conns=${BENCH_CONNS:-32}
GO=${GO:-go}

cd "$(dirname "$0")/.."
root=$(pwd)
started=$(date +%s)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	commit="$commit+dirty"
fi
name="$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$suffix"
results="$root/bench/results"
raw="$results/$name"
rm -rf "$raw"
mkdir -p "$raw"
work=${BENCH_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/nudge-bench.XXXXXX")}
mkdir -p "$work"
commands="$raw/commands.txt"
notes="$raw/notes.txt"
: >"$commands"
: >"$notes"

pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [ -z "${BENCH_WORK:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

# cmd runs a command and records it, exactly, for the report.
cmd() {
	echo "$*" >>"$commands"
	"$@"
}

# start runs a command in the background, records it, and sets $last_pid.
start() {
	local log=$1
	shift
	echo "$* &" >>"$commands"
	"$@" >"$log" 2>&1 &
	last_pid=$!
	pids+=("$last_pid")
}

# stop sends SIGTERM to a pid started here and waits at most 30 s.
stop() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

echo "== nudge benchmark ($mode): results in $raw"
# Before any load of ours, how much of the CPUs others take: the steal time
# of a virtual machine (its host gave the CPUs to other guests) over 5 s,
# and the kernel's CPU pressure (PSI: the share of time some task of this
# machine waited for a CPU, over the last 10, 60 and 300 s, which include
# whatever ran before).
steal() { awk '/^cpu /{ print $9, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat; }
if [ -r /proc/stat ]; then
	read -r steal0 total0 < <(steal)
	sleep 5
	read -r steal1 total1 < <(steal)
	awk -v s=$((steal1 - steal0)) -v t=$((total1 - total0)) \
		'BEGIN { printf "CPU steal time over 5 s before the benchmark: %.1f %% of the CPUs\n", (t > 0 ? 100 * s / t : 0) }' | tee -a "$notes"
fi
if [ -r /proc/pressure/cpu ]; then
	echo "CPU pressure before the benchmark (PSI some): $(grep '^some' /proc/pressure/cpu | cut -d' ' -f2-4)" | tee -a "$notes"
fi

echo "== Go micro-benchmarks"
cmd "$GO" test -run '^$' -bench . -benchmem -benchtime "$benchtime" ./engine ./rules ./store/pebble ./server | tee "$raw/micro.txt"

echo "== build"
cmd "$GO" build -o "$work/bin/nudge" ./cmd/nudge
cmd "$GO" build -o "$work/bin/nudge-bench" ./cmd/nudge-bench
nb="$work/bin/nudge-bench"
nudge="$work/bin/nudge"

echo "== generate $customers customers and the 1,000-action ruleset"
t0=$(date +%s.%N)
cmd "$nb" gen --customers "$customers" --data "$work/data"
t1=$(date +%s.%N)
awk -v n="$customers" -v a="$t0" -v b="$t1" -v d="$(du -sh "$work/data" | cut -f1)" \
	'BEGIN { printf "generated and imported %d customers in %.1f s (%.0f customers/s), %s on disk\n", n, b-a, n/(b-a), d }' | tee -a "$notes"
cmd "$nb" rules --actions 1000 --out "$work/rules-1000"

port=$("$nb" freeport)
cport=$("$nb" freeport)
url="http://127.0.0.1:$port"
common=(--customers "$customers" --conns "$conns")
# Measured runs also read the server's /metrics (nudge's, or the
# ceiling's, which serves the same process and runtime metrics) when
# measuring starts and ends: CPU per request, collections and scheduler
# waits in the report.
metrics=(--server-metrics "$url/metrics")
cmetrics=(--server-metrics "http://127.0.0.1:$cport/metrics")

# serve starts nudge on rules $1 with extra flags, and waits until ready.
serve() {
	local rules=$1
	shift
	start "$work/serve.log" "$nudge" serve --addr "127.0.0.1:$port" --rules "$rules" --data "$work/data" --log-level warn "$@"
	nudge_pid=$last_pid
	if ! cmd "$nb" wait --url "$url/readyz" --timeout 120s; then
		tail -20 "$work/serve.log" >&2
		exit 1
	fi
}

# ceiling starts the ceiling server on $cport, answering bodies the size of
# group $1's warm-up answers, and waits until it is up; $last_pid is its.
ceiling() {
	start "$work/ceiling.log" "$nb" ceiling --addr "127.0.0.1:$cport" --body-bytes-from "$work/$1-warmup.json" --max-time 30m
	cmd "$nb" wait --url "http://127.0.0.1:$cport/" --timeout 30s
}

# group measures one ruleset: warm-up, ceiling and nudge alternately, open
# loop at half of nudge's throughput.
group() {
	local g=$1 rules=$2
	shift 2
	local load=("${common[@]}" "$@")
	echo "== $g: $rules"
	serve "$rules"
	cmd "$nb" run --url "$url" "${load[@]}" --duration "$serverwarm" --name "$g-warmup" --out "$work/$g-warmup.json"
	ceiling "$g"
	local ceiling_pid=$last_pid
	for i in 1 2; do
		cmd "$nb" run --url "http://127.0.0.1:$cport" "${load[@]}" "${cmetrics[@]}" --warmup "$warmup" --duration "$duration" \
			--name "$g-ceiling-$i" --group "$g" --role ceiling --out "$raw/$g-ceiling-$i.json"
		cmd "$nb" run --url "$url" "${load[@]}" "${metrics[@]}" --warmup "$warmup" --duration "$duration" \
			--name "$g-nudge-$i" --group "$g" --out "$raw/$g-nudge-$i.json"
	done
	stop "$ceiling_pid"
	cmd "$nb" run --url "$url" "${load[@]}" "${metrics[@]}" --mode open --rate-from "$raw/$g-nudge-1.json,$raw/$g-nudge-2.json" --rate-factor 0.5 \
		--warmup "$warmup" --duration "$openduration" --name "$g-open-half" --group "$g" --out "$raw/$g-open-half.json"
	counters "$g (default cache)"
}

# floor runs the ceiling alone (nudge stopped, so that its compactions and
# collections do not disturb it) in open loop at the rate of group $1's
# open-loop run, half the throughput of the closed-loop results $2: this
# machine's floor for an open-loop p99 at that rate. Further arguments are
# the load's.
floor() {
	local g=$1 from=$2
	shift 2
	ceiling "$g"
	local ceiling_pid=$last_pid
	cmd "$nb" run --url "http://127.0.0.1:$cport" "${common[@]}" "$@" "${cmetrics[@]}" --mode open --rate-from "$from" --rate-factor 0.5 \
		--warmup "$warmup" --duration "$openduration" --name "$g-ceiling-open-half" --group "$g" --role ceiling \
		--out "$raw/$g-ceiling-open-half.json"
	stop "$ceiling_pid"
}

# counters notes the server's customer reads from the cache and from Pebble,
# the customers its cache evicted and declined, and the reads of Pebble's
# block cache (hits, and misses that read a file).
counters() {
	curl -s "$url/metrics" | grep -E '^nudge_(cache|pebble_block_cache)_(hits|misses|evictions|rejections)_total' | tr '\n' ' ' |
		sed "s/^/$1, server counters since its start: /; s/\$/\\n/" >>"$notes" || true
}

group demo testdata/storefront/rules
echo "== ingest (demo server)"
cmd "$nb" run --url "$url" "${common[@]}" "${metrics[@]}" --mix events=1 --batch 100 --warmup "$warmup" --duration "$duration" \
	--name ingest-batch100 --group ingest --out "$raw/ingest-batch100.json"
cmd "$nb" run --url "$url" "${common[@]}" "${metrics[@]}" --mix events=1 --batch 1 --warmup "$warmup" --duration "$duration" \
	--name ingest-single --group ingest --out "$raw/ingest-single.json"
stop "$nudge_pid"
floor demo "$raw/demo-nudge-1.json,$raw/demo-nudge-2.json"

placements1000=$(seq -f 'p%02g' -s, 0 19 | sed 's/,$//')
group actions-1000 "$work/rules-1000" --placements "$placements1000"
stop "$nudge_pid"
floor actions-1000 "$raw/actions-1000-nudge-1.json,$raw/actions-1000-nudge-2.json" --placements "$placements1000"

small_mb=${BENCH_SMALL_CACHE_MB:-32}
echo "== small cache: --cache-mb $small_mb, demo rules"
serve testdata/storefront/rules --cache-mb "$small_mb"
cmd "$nb" run --url "$url" "${common[@]}" --duration "$serverwarm" --name small-cache-warmup --out "$work/small-cache-warmup.json"
cmd "$nb" run --url "$url" "${common[@]}" "${metrics[@]}" --warmup "$warmup" --duration "$duration" \
	--name small-cache-closed --group small-cache --out "$raw/small-cache-closed.json"
cmd "$nb" run --url "$url" "${common[@]}" "${metrics[@]}" --mode open --rate-from "$raw/small-cache-closed.json" --rate-factor 0.5 \
	--warmup "$warmup" --duration "$openduration" --name small-cache-open-half --group small-cache --out "$raw/small-cache-open-half.json"
counters "small-cache (--cache-mb $small_mb)"
stop "$nudge_pid"
floor small-cache "$raw/small-cache-closed.json"

# The closed loops' requests through the handler in process, without the
# network: a decision with the CPU's caches as the previous one left them,
# and with 4 MiB written between two, as the load generator, the kernel and
# the server's other work evict them in the runs above. The data is not
# needed any more: these decisions record into it.
echo "== decide through the handler in process, caches warm and swept"
cmd "$nb" handler --data "$work/data" --rules testdata/storefront/rules --name demo \
	--customers "$customers" "${handlerruns[@]}" | tee -a "$notes"
cmd "$nb" handler --data "$work/data" --rules "$work/rules-1000" --placements "$placements1000" --name actions-1000 \
	--customers "$customers" "${handlerruns[@]}" | tee -a "$notes"

elapsed=$(($(date +%s) - started))
echo "end-to-end wall time $elapsed s ($mode)" >>"$notes"
cmd "$nb" report --dir "$raw" --out "$results/$name.md" --title "nudge benchmark ($mode)" --commit "$commit" \
	--commands "$commands" --micro "$raw/micro.txt" --notes "$notes"
echo
sed -n '/^## Summary/,/^## End-to-end/p' "$results/$name.md" | sed '$d'
echo "report: bench/results/$name.md (wall time $elapsed s)"
