#!/usr/bin/env bash
# Every counter name a header counts as a literal -- env.count("x") and the
# helpers that forward a name to it, drop("x"), reject_input("x"),
# admit(c, "x") -- is declared in a counter_set of the same header: the
# static half of the check DCP_ASSERT makes at run time, so that an error path
# no test reaches cannot count an undeclared name either.
# Usage: counter_names.sh INCLUDE_DIR
set -euo pipefail
status=0 checked=0
while IFS= read -r f; do
  # literal names counted on one line (a multi-line call is left to the run-time check)
  counted=$(grep -v '^\s*//' "$f" | grep -oE '(count|drop|reject_input)\("[a-z][a-z0-9_]*"|count\([^;]*\? "[a-z][a-z0-9_]*" : "[a-z][a-z0-9_]*"|admit\([^;]*, "[a-z][a-z0-9_]*"' |
    grep -oE '"[a-z][a-z0-9_]*"' | sort -u || true)
  [ -n "$counted" ] || continue
  declared=$(awk '/counter_set[ a-z_]*\{/ { on = 1 } on { print } on && /\}\};|\}\}\);/ { on = 0 }' "$f" |
    grep -oE '"[a-z][a-z0-9_]*"' | sort -u || true)
  missing=$(comm -23 <(echo "$counted") <(echo "$declared"))
  checked=$((checked + 1))
  if [ -n "$missing" ]; then
    echo "$f counts names its counter_set does not declare:" $missing
    status=1
  fi
done < <(grep -rlE '(count|drop|reject_input)\("' "$1/dcp" --include='*.hpp' | grep -vE '/dcp/(core|sim|net)/')
echo "$checked headers: every literal counter name declared"
exit $status
