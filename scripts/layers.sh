#!/usr/bin/env bash
# Checks the layering ARCHITECTURE.md describes: which top-level modules of
# `src/` each layer may use, and that nothing outside `http` and `app` knows
# actix. Fails with the offending lines. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# layer -> the layers it may use besides itself.
declare -A may_use=(
    [domain]=""
    [settings]=""
    [db]="domain settings"
    [live]="db domain settings"
    [inbox]="db live domain settings"
    [jobs]="inbox live db domain settings"
    [http]="inbox live jobs db domain settings"
    [app]="http inbox live jobs db domain settings"
)

status=0
for layer in "${!may_use[@]}"; do
    if [ -d "src/$layer" ]; then
        files=$(find "src/$layer" -name '*.rs')
    elif [ -f "src/$layer.rs" ]; then
        files="src/$layer.rs"
    else
        echo "layers.sh: no module src/$layer" >&2
        status=1
        continue
    fi
    allowed=" $layer ${may_use[$layer]} "
    for file in $files; do
        # Every `crate::x` path in code (comments may point anywhere),
        # including each name of `crate::{x, y::z}`.
        code=$(grep -vE '^\s*//' "$file" || true)
        used=$( (grep -oE 'crate::[a-z_]+' <<<"$code" | sed 's/crate:://'
                 grep -oE 'crate::\{[^}]*' <<<"$code" | sed 's/crate::{//' | tr ',' '\n' |
                     sed -E 's/^ *([a-z_]+).*/\1/') | sort -u || true)
        for module in $used; do
            if [[ "$allowed" != *" $module "* ]]; then
                echo "$file: the $layer layer may not use crate::$module" >&2
                grep -n "crate::$module\|crate::{.*$module" "$file" | sed "s|^|  $file:|" >&2
                status=1
            fi
        done
        if [ "$layer" != http ] && [ "$layer" != app ] && grep -qE '\bactix' <<<"$code"; then
            echo "$file: only http and app may know actix" >&2
            grep -nE '\bactix' "$file" | sed "s|^|  $file:|" >&2
            status=1
        fi
    done
done
# Every top-level module is in the table above.
for entry in src/*; do
    name=$(basename "$entry" .rs)
    case "$name" in lib | main) continue ;; esac
    if [ -z "${may_use[$name]+set}" ]; then
        echo "layers.sh: src/$name is in no layer; add it to scripts/layers.sh and ARCHITECTURE.md" >&2
        status=1
    fi
done
[ $status -eq 0 ] && echo "layers: every module uses only the layers below it"
exit $status
