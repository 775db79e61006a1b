#!/usr/bin/env bash
# bench/soak.sh: `make soak`. Serves the demo storefront rules on generated
# customers, sends decides (with events and feedback) at a constant rate
# for SOAK_DURATION (default 10m) and samples nudge's resident memory
# (VmRSS) every SOAK_EVERY (default 5s). Writes
# bench/results/<date>-<commit>-soak.md with the samples, and says whether
# RSS stayed within ±10 % of its mean after the first minute (warm-up:
# the cache fills). Nothing is asserted: the figures are the result.
#
# Overrides: SOAK_DURATION, SOAK_EVERY, SOAK_RATE (default 2000 req/s),
# SOAK_CUSTOMERS (default 100000), SOAK_CACHE_MB (default 256), GO.
# Only 127.0.0.1 is used; every process started here is stopped on exit.
set -euo pipefail
duration=${SOAK_DURATION:-10m}
every=${SOAK_EVERY:-5}
rate=${SOAK_RATE:-2000}
customers=${SOAK_CUSTOMERS:-100000}
cachemb=${SOAK_CACHE_MB:-256}
GO=${GO:-go}

cd "$(dirname "$0")/.."
root=$(pwd)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
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

load_cmd=("$nb" run --url "$url" --mode open --rate "$rate" --duration "$duration" --warmup 0s --customers "$customers" --conns 32 --name soak --out "$work/soak.json")
"${load_cmd[@]}" >"$work/load.log" 2>&1 &
load_pid=$!
pids+=("$load_pid")

samples="$work/rss.csv"
echo "seconds,rss_kib" >"$samples"
start=$(date +%s)
while kill -0 "$load_pid" 2>/dev/null; do
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$nudge_pid/status" 2>/dev/null || echo "")
	[ -n "$rss" ] && echo "$(( $(date +%s) - start )),$rss" >>"$samples"
	sleep "$every"
done
wait "$load_pid" || true

summary=$(awk -F, 'NR > 1 && $1 >= 60 { n++; s += $2; if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2 }
	END { if (n == 0) { print "no samples after the first minute"; exit }
	      m = s / n; lo = (min - m) / m * 100; hi = (max - m) / m * 100
	      verdict = (lo >= -10 && hi <= 10) ? "within" : "NOT within"
	      printf "after the first minute: %d samples, mean %.1f MiB, min %.1f MiB (%+.1f %%), max %.1f MiB (%+.1f %%): %s ±10 %% of the mean", n, m/1024, min/1024, lo, max/1024, hi, verdict }' "$samples")
{
	echo "# nudge soak"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, $(nproc) CPUs, $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $("$GO" version | awk '{print $3}')."
	echo
	echo "**RSS $summary.**"
	echo
	echo "Load: $(tail -n 1 "$work/load.log")"
	echo
	echo "Commands:"
	echo
	echo '```'
	echo "WORK/nudge-bench gen --customers $customers --data WORK/data"
	echo "${serve_cmd[*]}" | sed "s|$work|WORK|g"
	echo "${load_cmd[*]}" | sed "s|$work|WORK|g"
	echo '```'
	echo
	echo "RSS samples (seconds since the load started, KiB):"
	echo
	echo '```'
	cat "$samples"
	echo '```'
} >"$out"
echo "RSS $summary"
echo "report: bench/results/$name.md"
