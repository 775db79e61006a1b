#!/usr/bin/env bash
# bench/soak.sh: `make soak`. Serves the demo storefront rules on generated
# customers and sends requests at a constant rate (open loop), sampling
# nudge's resident memory (VmRSS) and Go heap every SOAK_EVERY seconds, in
# two phases:
#
#  1. warm-up: at the same rate until RSS has grown by less than 2 % over
#     the last 120 s (the customer cache is full and the window spans
#     several collections at the memory limit), but at least
#     SOAK_WARMUP_MIN and at most SOAK_WARMUP_MAX seconds. Pebble's
#     memtables, which double from 256 KiB to their size, grow for longer
#     at this rate: the report gives the trend of the measured window;
#  2. the measured window: SOAK_DURATION (default 10m) at the same rate,
#     by a new load generator run (its latencies are the report's).
#
# Writes bench/results/<date>-<commit>-soak.md with both phases' samples
# and says whether RSS stayed within ±10 % of its mean over the whole
# measured window (its minimum and its maximum against the mean), with
# its trend in MiB per minute. Nothing is asserted: the figures are the
# result.
#
# Overrides: SOAK_DURATION, SOAK_EVERY (default 5), SOAK_RATE (default
# 2000 req/s), SOAK_MIX (default decide=90,events=8,feedback=2, the
# benchmark's mix), SOAK_CUSTOMERS (default 100000), SOAK_CACHE_MB
# (default 256), SOAK_WARMUP_MIN (default 120), SOAK_WARMUP_MAX (default
# 600), GO. GOMEMLIMIT, if set, reaches nudge.
# Only 127.0.0.1 is used; every process started here is stopped on exit.
set -euo pipefail
duration=${SOAK_DURATION:-10m}
every=${SOAK_EVERY:-5}
rate=${SOAK_RATE:-2000}
mix=${SOAK_MIX:-decide=90,events=8,feedback=2}
customers=${SOAK_CUSTOMERS:-100000}
cachemb=${SOAK_CACHE_MB:-256}
warmup_min=${SOAK_WARMUP_MIN:-120}
warmup_max=${SOAK_WARMUP_MAX:-600}
# Seconds over which warm-up RSS must grow by less than 2 %: several
# collections (at 2,000 req/s and the default memory limit, one every
# 30 to 40 s once the cache is full), so that a heap still climbing to
# the limit between collections does not pass for stable.
stable_window=120
GO=${GO:-go}

cd "$(dirname "$0")/.."
root=$(pwd)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	commit="$commit+dirty"
fi
name="$(date -u +%Y-%m-%d)-$commit-soak"
out="$root/bench/results/$name.md"
work=$(mktemp -d "${TMPDIR:-/tmp}/nudge-soak.XXXXXX")
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

"$GO" build -o "$work/nudge" ./cmd/nudge
"$GO" build -o "$work/nudge-bench" ./cmd/nudge-bench
nb="$work/nudge-bench"
"$nb" gen --customers "$customers" --data "$work/data"
port=$("$nb" freeport)
url="http://127.0.0.1:$port"
serve_cmd=("$work/nudge" serve --addr "127.0.0.1:$port" --rules testdata/storefront/rules --data "$work/data" --cache-mb "$cachemb" --log-level warn)
"${serve_cmd[@]}" >"$work/serve.log" 2>&1 &
nudge_pid=$!
pids+=("$nudge_pid")
"$nb" wait --url "$url/readyz" --timeout 120s
memlimit=$(curl -s --max-time 2 "$url/metrics" 2>/dev/null | awk '$1 == "go_gc_gomemlimit_bytes" { if ($2 >= 2^62) print "none"; else printf "%.0f MiB", $2 / 1048576 }' || true)

# sample prints "rss_kib,go_heap_kib" of nudge now (the heap from /metrics:
# go_memstats_heap_inuse_bytes; empty if it cannot be read).
sample() {
	local rss heap
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$nudge_pid/status" 2>/dev/null || echo "")
	heap=$(curl -s --max-time 2 "$url/metrics" 2>/dev/null | awk '$1 == "go_memstats_heap_inuse_bytes" {printf "%d", $2 / 1024}' || true)
	echo "$rss,$heap"
}

# metric prints the value of one of nudge's unlabelled metrics.
# load_line FILE: the summary of the nudge-bench run that wrote FILE (its
# latency line, which names the run's rate) and the load generator's CPU.
load_line() {
	echo "$(grep 'req/s' "$1" | tail -n 1 | tr -s ' '); $(grep -o 'load generator: .*' "$1" | tail -n 1)"
}

metric() {
	curl -s --max-time 2 "$url/metrics" 2>/dev/null | awk -v m="$1" '$1 == m { print $2 }' || true
}

load_args=(--url "$url" --mode open --rate "$rate" --mix "$mix" --customers "$customers" --conns 32)

# Warm-up: the load runs until stopped (at most warmup_max seconds).
warm_cmd=("$nb" run "${load_args[@]}" --duration "${warmup_max}s" --warmup 0s --name warmup)
"${warm_cmd[@]}" >"$work/warmup.log" 2>&1 &
warm_pid=$!
pids+=("$warm_pid")
warm_samples="$work/warmup.csv"
echo "seconds,rss_kib,go_heap_kib" >"$warm_samples"
rss_hist=()
stable=""
start=$(date +%s)
while kill -0 "$warm_pid" 2>/dev/null; do
	t=$(($(date +%s) - start))
	s=$(sample)
	rss=${s%%,*}
	if [ -n "$rss" ]; then
		echo "$t,$s" >>"$warm_samples"
		rss_hist+=("$t:$rss")
		# The sample closest to stable_window seconds ago.
		then_rss=""
		for h in "${rss_hist[@]}"; do
			[ "${h%%:*}" -le $((t - stable_window)) ] && then_rss=${h#*:}
		done
		if [ "$t" -ge "$warmup_min" ] && [ -n "$then_rss" ] && [ $((rss * 100)) -lt $((then_rss * 102)) ]; then
			stable="RSS grew by less than 2 % over the last ${stable_window} s"
			break
		fi
	fi
	[ "$t" -ge "$warmup_max" ] && break
	sleep "$every"
done
warm_secs=$(($(date +%s) - start))
kill -TERM "$warm_pid" 2>/dev/null || true
wait "$warm_pid" 2>/dev/null || true
[ -n "$stable" ] || stable="RSS was still growing by 2 % or more per ${stable_window} s when the warm-up limit (${warmup_max} s) ended it"

# The measured window.
load_cmd=("$nb" run "${load_args[@]}" --duration "$duration" --warmup 0s --name soak --out "$work/soak.json")
"${load_cmd[@]}" >"$work/load.log" 2>&1 &
load_pid=$!
pids+=("$load_pid")
samples="$work/rss.csv"
echo "seconds,rss_kib,go_heap_kib" >"$samples"
gc0=$(metric go_gc_duration_seconds_count)
cpu0=$(metric process_cpu_seconds_total)
start=$(date +%s)
while kill -0 "$load_pid" 2>/dev/null; do
	s=$(sample)
	[ -n "${s%%,*}" ] && echo "$(($(date +%s) - start)),$s" >>"$samples"
	sleep "$every"
done
wait "$load_pid" || true
secs=$(($(date +%s) - start))
gc1=$(metric go_gc_duration_seconds_count)
cpu1=$(metric process_cpu_seconds_total)
cost=$(awk -v g0="$gc0" -v g1="$gc1" -v c0="$cpu0" -v c1="$cpu1" -v s="$secs" \
	'BEGIN { if (g0 == "" || g1 == "" || c0 == "" || c1 == "") { print "unknown"; exit }
	         printf "%d GC cycles (one every %.1f s), nudge used %.2f CPUs", g1 - g0, (g1 > g0 ? s / (g1 - g0) : 0), (c1 - c0) / s }')

warm_summary=$(awk -F, 'NR == 2 { first = $2 } NR > 1 { last = $2; lh = $3 }
	END { printf "%s s; RSS from %.1f MiB to %.1f MiB (Go heap in use %.1f MiB at its end)", secs, first/1024, last/1024, lh/1024 }' secs="$warm_secs" "$warm_samples")
summary=$(awk -F, 'NR > 1 && $2 != "" { n++; s += $2; if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2; hs += $3
	      t = $1 / 60; st += t; stt += t * t; sy += $2 / 1024; sty += t * $2 / 1024 }
	END { if (n == 0) { print "no samples in the measured window"; exit }
	      m = s / n; lo = (min - m) / m * 100; hi = (max - m) / m * 100
	      verdict = (lo >= -10 && hi <= 10) ? "within" : "NOT within"
	      d = n * stt - st * st; slope = d > 0 ? (n * sty - st * sy) / d : 0
	      printf "over the measured window: %d samples, mean %.1f MiB, min %.1f MiB (%+.1f %%), max %.1f MiB (%+.1f %%): %s ±10 %% of the mean; trend %+.1f MiB/min (least squares); Go heap in use: mean %.1f MiB", n, m/1024, min/1024, lo, max/1024, hi, verdict, slope, hs/n/1024 }' "$samples")
{
	echo "# nudge soak"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, $(nproc) CPUs, $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $("$GO" version | awk '{print $3}')."
	echo
	echo "**RSS $summary.**"
	echo
	echo "Warm-up (same load, not measured): $warm_summary; $stable."
	echo
	echo "Load (measured window): $(load_line "$work/load.log")"
	echo
	echo "Load (warm-up): $(load_line "$work/warmup.log")"
	echo
	echo "Memory limit of nudge's Go runtime (go_gc_gomemlimit_bytes): ${memlimit:-unknown}${GOMEMLIMIT:+ (GOMEMLIMIT=$GOMEMLIMIT)}. Over the measured window: $cost."
	echo
	echo "Commands:"
	echo
	echo '```'
	echo "WORK/nudge-bench gen --customers $customers --data WORK/data"
	echo "${serve_cmd[*]}" | sed "s|$work|WORK|g"
	echo "${warm_cmd[*]}   # stopped once RSS is stable" | sed "s|$work|WORK|g"
	echo "${load_cmd[*]}" | sed "s|$work|WORK|g"
	echo '```'
	echo
	echo "Warm-up samples (seconds since the warm-up started, KiB):"
	echo
	echo '```'
	cat "$warm_samples"
	echo '```'
	echo
	echo "Measured window samples (seconds since the measured load started, KiB):"
	echo
	echo '```'
	cat "$samples"
	echo '```'
} >"$out"
echo "warm-up: $warm_summary; $stable"
echo "RSS $summary"
echo "load: $(load_line "$work/load.log")"
echo "memory limit: ${memlimit:-unknown}; $cost"
echo "report: bench/results/$name.md"
