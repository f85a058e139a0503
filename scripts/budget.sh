#!/usr/bin/env bash
# The instruction budget (BENCHMARKS.md, "Instruction budget"): Herald's
# instructions per publish, per batch element, per delivered SSE and
# WebSocket event, counted by callgrind, and its memory per idle SSE
# stream, each against benches/budget.toml; fails when one is more than 5 %
# over. Counts do not drift with the machine's load, so this runs in CI.
#
#   scripts/budget.sh                       # everything, against the budget
#   scripts/budget.sh measure publish       # one entry, no comparison
#   scripts/budget.sh measure publish --count 4000
#   scripts/budget.sh memory
#
# Builds `herald` with the `budget` profile (release without whole-program
# LTO, symbols kept: see Cargo.toml); the budget's figures are of that
# profile. The callgrind files stay in target/budget-run/ for
# callgrind_annotate (not in target/budget/, where cargo puts that build).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
    echo "installing valgrind" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends valgrind >/dev/null
fi

[ $# -gt 0 ] || set -- check
# Only the measured binary needs the `budget` profile. The driver's own
# speed does not matter: its test build (dev profile) serves, and in CI
# scripts/test.sh has built it already, which saves CI a second build of
# the client's dependencies.
cargo build --locked --profile budget --bin herald
herald="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/budget/herald"
exec cargo test --locked --bench budget -- --bench --herald "$herald" "$@"
