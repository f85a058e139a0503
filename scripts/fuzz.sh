#!/usr/bin/env bash
# Fuzzes the live API against openapi.yaml with Schemathesis: starts Herald
# on a private PostgreSQL of its own, gives one user some history, then sends
# generated requests, valid and invalid, to every operation and checks every
# answer against the spec (documented status, content type, headers and
# schema; no 5xx; invalid data refused, valid data accepted; 405 with `Allow`
# for undocumented methods; 401 without a token). Fails on any finding.
#   scripts/fuzz.sh                      the run scripts/test.sh makes
#   FUZZ_EXAMPLES=200 scripts/fuzz.sh    more cases per operation (default 100)
#   FUZZ_SEED=1234 scripts/fuzz.sh       repeat a run (each run prints its seed)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# Pinned: checks, their defaults and the CLI change between releases.
schemathesis_version='4.32.*'
installed() {
    python3 -c 'import importlib.metadata as m, sys; sys.exit(not m.version("schemathesis").startswith("4.32."))' \
        2>/dev/null
}
if ! installed; then
    echo "== installing schemathesis $schemathesis_version"
    python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

examples=${FUZZ_EXAMPLES:-100}
seed=${FUZZ_SEED:-$(python3 -c 'import random; print(random.getrandbits(48))')}

work=$(mktemp -d "${TMPDIR:-/tmp}/herald-fuzz.XXXXXX")
# Run as root, the private PostgreSQL runs as another account, which must
# reach its data directory in here (a throwaway database, nothing secret);
# otherwise it would put the data elsewhere and the cleanup below would miss it.
chmod 755 "$work"
server=
stop_server() {
    [ -n "$server" ] || return 0
    kill -TERM "$server" 2>/dev/null || true
    # Graceful shutdown ends streams, then stops the private PostgreSQL.
    for _ in $(seq 1 100); do
        kill -0 "$server" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
}
trap 'stop_server; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# The same debug build as `cargo test` (same profile, features and lock
# file), so nothing is compiled again after the test suite.
echo "== building and minting tokens"
herald() { cargo run --locked -q -- "$@"; }
admin_token=$(herald token --sub fuzz-user --scope "publish admin")
user_token=$(herald token --sub fuzz-user)

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
echo "== starting Herald on $base"
# Never DATABASE_URL: the fuzzer writes junk, so it gets a database of its
# own that is thrown away. A 1 s heartbeat makes the server notice a closed
# SSE stream (the fuzzer reads each for a moment, then hangs up) at once
# instead of holding one of the user's 16 stream slots for 15 s.
env -u DATABASE_URL \
    HERALD_LISTEN="127.0.0.1:$port" \
    HERALD__DATABASE__EMBEDDED_DIR="$work/postgres" \
    HERALD__SERVER__HEARTBEAT_SECS=1 \
    cargo run --locked -q -- serve >"$work/server.log" 2>&1 &
server=$!
ready=no
for _ in $(seq 1 300); do
    if ! kill -0 "$server" 2>/dev/null; then
        break
    fi
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$base/readyz" 2>/dev/null; then
        ready=yes
        break
    fi
    sleep 0.5
done
if [ "$ready" != yes ]; then
    echo "scripts/fuzz.sh: Herald did not become ready; its log:" >&2
    tail -n 50 "$work/server.log" >&2
    exit 1
fi

echo "== seeding"
ids=$(python3 scripts/fuzz/seed.py "$base" "$admin_token" fuzz-user)

cat >"$work/schemathesis.toml" <<EOF
hooks = "$root/scripts/fuzz/hooks.py"

# Every check (what \`--checks all\` selects, but overridable per operation
# below, which that option is not).
[checks]
enabled = true

# Path ids are drawn from what the seeding made half of the time, so that
# get, read, unread, seen, archive, snooze, actions and delete also meet
# notifications that exist (and, for actions, ids they have), schedules are
# read and canceled in every state, and topics and categories are ones the
# user belongs to or has set.
[dictionaries.ids]
values = $ids
[dictionaries.users]
values = ["fuzz-user"]
[dictionaries.actions]
values = ["open", "dismiss"]
[dictionaries.topics]
values = ["news", "team:ops"]
[dictionaries.categories]
values = ["billing", "ops", "social", "digest"]
[parameters]
"path.id" = { dictionary = "ids", probability = 0.5 }
"path.user_id" = { dictionary = "users", probability = 0.5 }
"path.action_id" = { dictionary = "actions", probability = 0.5 }
"path.topic" = { dictionary = "topics", probability = 0.5 }
"path.category" = { dictionary = "categories", probability = 0.5 }

# An SSE stream never ends by itself: each one is read for 1 s (its replay,
# a reset, heartbeats) or 20 events, then checked event by event against the
# spec. Fewer random cases, as each takes that second.
[[operations]]
include-operation-id = "streamMyEvents"
request-timeout = 1
generation.max-examples = $((examples / 4 + 1))

# What a DELETE removes is not what these GETs read, so that they answer
# 200 after it is right, not a use after free: unsubscribing users leaves
# the topic's (remaining, possibly no) subscribers to list, and a canceled
# schedule stays readable with `status` canceled.
[[operations]]
include-operation-id = "listTopicSubscribers"
checks.use_after_free.enabled = false

[[operations]]
include-operation-id = "getSchedule"
checks.use_after_free.enabled = false

# Plain HTTP requests cannot complete a WebSocket handshake, so every valid
# request to /v1/me/ws rightly answers 400 "not a WebSocket handshake" (as
# documented): only "valid data must be accepted" cannot hold there. The
# rest (tokens, query handling, status codes, problem documents) is checked
# as everywhere; the WebSocket itself is tested in tests/api/ws.rs.
[[operations]]
include-operation-id = "websocketMyEvents"
checks.positive_data_acceptance.enabled = false
# ... and so is the warning that valid data is mostly refused.
warnings = false
EOF

# Both runs act as the same user: first with a token that may do everything,
# then with a plain user token (publish and admin operations must answer a
# documented 403, and the user's own operations work as before; the warning
# that those answer nothing but 403 is expected there, so it is off).
# One worker: the generator is not thread-safe on every Python 3.11 (a
# spurious "AST constructor recursion depth mismatch" error).
st() {
    (cd "$work" && python3 -m schemathesis.cli --config-file "$work/schemathesis.toml" \
        run "$root/openapi.yaml" --url "$base" --workers 1 --seed "$seed" \
        --generation-database none --no-color "$@")
}
status=0
echo "== schemathesis, admin token ($examples examples per operation, seed $seed)"
st --max-examples "$examples" -H "Authorization: Bearer $admin_token" || status=1
echo "== schemathesis, user token ($((examples / 4 + 1)) examples per operation, seed $seed)"
st --max-examples "$((examples / 4 + 1))" -H "Authorization: Bearer $user_token" \
    --warnings missing_test_data,validation_mismatch,missing_deserializer,unsupported_regex,unresolvable_reference,low_valid_rate,rate_limited,dictionary_mismatch \
    || status=1

if [ "$status" -ne 0 ]; then
    echo "scripts/fuzz.sh: failures (repeat with FUZZ_SEED=$seed); the server's log ends:" >&2
    tail -n 50 "$work/server.log" >&2
fi
exit "$status"
