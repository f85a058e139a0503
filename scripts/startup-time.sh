#!/usr/bin/env bash
# Start-up time of a Herald binary: from exec until /readyz answers 200
# (migrations checked, pool connected, listening), five runs, then the
# median. Uses DATABASE_URL when set (the production case); without it the
# time includes starting the private PostgreSQL.
#   scripts/startup-time.sh [BINARY]     default target/release/herald
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/herald}
port=${PORT:-18099}
[ -x "$bin" ] || { echo "no binary at $bin (cargo build --release)" >&2; exit 1; }
echo "binary: $bin, $(stat -c %s "$bin") bytes, $("$bin" --version)"
# Never print the URL itself: it may hold a password.
if [ -n "${DATABASE_URL:-}" ]; then
    echo "database: DATABASE_URL (the first run also applies any pending migrations)"
else
    echo "database: a private PostgreSQL, whose start is included in the time"
fi
times=()
for run in 1 2 3 4 5; do
    start=$(date +%s%N)
    HERALD_LISTEN=127.0.0.1:$port "$bin" serve >/dev/null 2>&1 &
    pid=$!
    until curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"; do
        kill -0 $pid 2>/dev/null || { echo "herald exited" >&2; exit 1; }
        sleep 0.005
    done
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    times+=("$ms")
    echo "run $run: ${ms} ms"
    kill -TERM $pid
    wait $pid || true
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
echo "median: ${median} ms"
