#!/usr/bin/env bash
# The adversarial suite against a release build of Herald, on loopback only:
# a private PostgreSQL on a Unix socket and `herald` on 127.0.0.1, attacked
# by this machine's own client processes. Bounded to a few minutes; exits
# non-zero if any attack fails (see SECURITY.md, "Adversarial run").
#   scripts/attack.sh                      every attack, full load
#   scripts/attack.sh slowloris tokens     only these
#   scripts/attack.sh --scale 0.2          a fifth of the load
#   scripts/attack.sh --churn 40000 --procs 4 --settle 60
# Not part of CI's default run (it takes minutes); a tiny version of every
# attack runs under `cargo test` (benches/attack).
set -euo pipefail
cd "$(dirname "$0")/.."

# `cargo bench` builds `herald` and the attacking client with optimizations.
exec cargo bench --locked --bench attack -- "$@"
