#!/usr/bin/env bash
# Runs Herald's whole test suite: unit tests, the end-to-end API tests and
# the browser tests. Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh sse::        (only tests whose name contains "sse::")
#   DATABASE_URL=postgres://... scripts/test.sh   (use an existing server)
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
# DATABASE_URL, the outage test stops and restarts one), so the server
# binaries must be here, on PATH or where Debian puts them.
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

# The browser tests drive Debian's Chromium through chromedriver.
[ -x /usr/bin/chromium ] || need "chromium chromium-driver" "Chromium and chromedriver"

# One debug build with one feature set for everything, so nothing is built
# twice (CI's clippy and any later `cargo test` reuse the same dependencies).
exec cargo test --locked --all-targets "$@"
