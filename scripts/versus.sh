#!/usr/bin/env bash
# Herald side by side with nginx + nchan: installs nginx and its nchan module
# (Debian packages) when missing, then runs the `versus` benchmark with the
# given arguments, e.g.
#   scripts/versus.sh throughput
#   scripts/versus.sh replay --users 10000 --runs 3
#   scripts/versus.sh scale --target herald
# See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=0
[ -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || missing=1
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing=1
if [ "$missing" -eq 1 ]; then
    echo "installing nginx and libnginx-mod-nchan" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends nginx libnginx-mod-nchan >/dev/null
    # The package may start the system's nginx on port 80; the benchmark runs its own.
    $sudo service nginx stop >/dev/null 2>&1 || true
fi

exec cargo bench --locked --bench versus -- "$@"
