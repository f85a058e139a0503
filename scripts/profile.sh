#!/usr/bin/env bash
# Where does the durable publish path spend CPU?
#
# Runs the publish benchmark's throughput scenario (Herald in-process, a
# private PostgreSQL with fsync on, real HTTP) and samples every CPU with
# perf's software clock (hardware counters are often unavailable on VMs).
# Prints the split by thread name (herald HTTP workers `actix-rt|…`, the
# benchmark runtime `tokio-runtime-w` that runs the load generator, the
# publish workers and sqlx, PostgreSQL backends `postgres`, idle `swapper`),
# by binary/library, and the hottest symbols. One sample per ms of CPU.
#
#   scripts/profile.sh                 # 20 s run, 12 s sampled
#   SECONDS_RUN=30 SAMPLE=20 scripts/profile.sh
#   CALLGRAPH=dwarf scripts/profile.sh # with call stacks (large output)
#
# Needs `perf` and permission to sample all CPUs (root, or
# kernel.perf_event_paranoid <= 0). Output: target/profile/perf.data.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_RUN=${SECONDS_RUN:-20}
SAMPLE=${SAMPLE:-12}
TOP=${TOP:-40}
OUT=target/profile
mkdir -p "$OUT"

# BIN=path/to/a/built/publish/benchmark profiles that build instead (to
# compare two versions back to back under the same machine load).
bin=${BIN:-$(cargo bench --bench publish --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*publish-[0-9a-f]*\)).*/\1/p' | tail -n1)}
[ -x "$bin" ] || { echo "could not find the publish benchmark binary" >&2; exit 1; }

callgraph=()
case "${CALLGRAPH:-}" in
    "") ;;
    dwarf) callgraph=(--call-graph dwarf,16384) ;;
    *) callgraph=(-g) ;;
esac

"$bin" throughput --seconds "$SECONDS_RUN" --bench >"$OUT/bench.log" 2>&1 &
bench=$!
# Start sampling once the server is up and the users are seeded.
for _ in $(seq 1 120); do
    grep -q '^throughput:' "$OUT/bench.log" 2>/dev/null && break
    sleep 0.5
done
sleep 2
perf record -e cpu-clock -c 1000000 -a "${callgraph[@]}" -o "$OUT/perf.data" -- sleep "$SAMPLE" \
    2>"$OUT/perf-record.log"
# The threads of the benchmark and of its PostgreSQL (postmaster and
# backends): other processes on the machine are left out of the figures.
descendants() { local p; for p in $(ps -o pid= --ppid "$1"); do echo "$p"; descendants "$p"; done; }
tids=$( (ls /proc/"$bench"/task; descendants "$bench") | paste -sd, -)
wait "$bench"
cat "$OUT/bench.log"
echo "load while profiling: $(cut -d' ' -f1-3 /proc/loadavg)"

report() {
    perf report -i "$OUT/perf.data" --stdio --no-children -g none "$@" 2>/dev/null |
        grep -v '^#' | grep -v '^$'
}
# CPU time per publish, by thread name: unlike the rate, it hardly depends
# on what else the machine is running.
rate=$(sed -n 's/.*"publishes_per_sec":\([0-9.]*\).*/\1/p' "$OUT/bench.log")
echo; echo "== CPU of the benchmark process and its PostgreSQL, by thread name =="
echo "   (samples = ms of CPU; µs of CPU per publish)"
report --sort pid -n |
    awk -v tids=",$tids," -v rate="$rate" -v secs="$SAMPLE" '{
        split($3, id, ":"); if (index(tids, "," id[1] ",") == 0) next
        name = substr($3, length(id[1]) + 2); for (i = 4; i <= NF; i++) name = name " " $i
        n[name] += $2; total += $2
    }
    END {
        for (name in n) printf "%8d samples %7.1f us/publish  %s\n", n[name], (n[name] / 1000) / (rate * secs) * 1e6, name
        printf "%8d samples %7.1f us/publish  herald + load generator + PostgreSQL\n", total, (total / 1000) / (rate * secs) * 1e6
    }' | sort -k1,1nr
echo; echo "== whole machine by thread name (swapper = idle) =="
report --sort comm | head -n 10
echo; echo "== the benchmark and its PostgreSQL by binary/library =="
report --tid "$tids" --sort comm,dso | head -n 20
echo; echo "== the benchmark and its PostgreSQL: hottest symbols =="
report --tid "$tids" --sort comm,sym | head -n "$TOP"
