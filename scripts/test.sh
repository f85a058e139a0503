#!/usr/bin/env bash
# Runs Herald's whole test suite: the JavaScript client's own tests (npm
# test in clients/js), unit tests, the end-to-end API and browser tests (the
# client's against a live Herald among them), a short run of the benchmark,
# then API fuzzing against openapi.yaml (scripts/fuzz.sh). Extra arguments go
# to `cargo test` and skip the npm tests and the fuzzing:
#   scripts/test.sh sse::                  only tests whose name contains "sse::"
#   scripts/test.sh -- --nocapture         show the tests' output
#   DATABASE_URL=postgres://... scripts/test.sh   use an existing server
set -euo pipefail
cd "$(dirname "$0")/.."

# Installing packages needs root; say what is missing otherwise.
apt_updated=no
need() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "scripts/test.sh: missing $2; install it with:" >&2
        echo "  sudo apt-get install -y --no-install-recommends $1" >&2
        exit 1
    fi
    if [ "$apt_updated" = no ]; then
        apt-get update
        apt_updated=yes
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $1
}

# The tests start private PostgreSQL servers of their own (even with
# DATABASE_URL, the outage test and the benchmark start one), so the server
# binaries must be here: on PATH or where Debian puts them.
has_postgres() {
    if command -v postgres >/dev/null && command -v initdb >/dev/null; then
        return 0
    fi
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ]; then
            return 0
        fi
    done
    return 1
}
has_postgres || need postgresql "the PostgreSQL server (postgres, initdb)"

# The browser tests drive a headless Chromium (HERALD_CHROMIUM names another).
[ -x "${HERALD_CHROMIUM:-/usr/bin/chromium}" ] || need chromium "Chromium"
# A Chinese font, so the Simplified Chinese screenshot shows characters, not boxes.
[ -n "$(fc-list :lang=zh 2>/dev/null)" ] || need fonts-wqy-microhei "a Chinese font"

# The deployment tests (tests/deploy) run Herald behind Debian's nginx with
# the configuration in deploy/, make a test certificate with openssl, speak
# HTTP/2 over TLS with curl, and run docs/api.md's recipes (curl, jq).
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need nginx "nginx"
for tool in curl jq openssl; do
    command -v $tool >/dev/null || need $tool "$tool"
done

# The JavaScript client (clients/js) needs Node 18 or later and npm; its
# tests against a live Herald and in Chromium run from `cargo test` below.
command -v node >/dev/null && command -v npm >/dev/null || need "nodejs npm" "Node.js and npm"
node -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)' || {
    echo "scripts/test.sh: Node $(node --version) is too old; the JavaScript client needs 18 or later" >&2
    exit 1
}

status=0
# Its development dependencies, exactly as the committed lockfile has them.
(cd clients/js && npm ci --no-audit --no-fund --loglevel=error) || status=$?
# The official Standard Webhooks verifier, which the webhook tests
# (tests/api/webhooks) run on the requests Herald sends.
(cd tests/webhook_verifier && npm ci --no-audit --no-fund --loglevel=error) || status=$?

# Its own tests (no server): the store, the type declarations, the size
# budget, the packed tarball. Skipped, like the fuzzing, when arguments
# choose some cargo tests.
if [ $# -eq 0 ]; then
    echo "== npm test (clients/js)"
    (cd clients/js && npm test) || status=$?
fi

# Every target in one debug build with one feature set, so nothing is built
# twice; --locked: test exactly the committed Cargo.lock; --no-fail-fast:
# one run reports every failing test binary, not just the first.
cargo test --locked --all-targets --no-fail-fast "$@" || status=$?

# The fuzzing runs the binary that build made (`cargo run --locked`, same
# profile and features), even after failed tests, so one run reports both.
if [ $# -eq 0 ]; then
    echo "== scripts/fuzz.sh"
    scripts/fuzz.sh || status=$?
fi
exit $status
