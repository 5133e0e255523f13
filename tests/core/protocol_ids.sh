#!/usr/bin/env bash
# Every protocol's default id is its own across the library: a node runs its
# protocols side by side by id, so two chapters composed with their defaults
# must not collide (two helpers once picked 31 in the same week).
# Usage: protocol_ids.sh INCLUDE_DIR
set -euo pipefail
ids=$(grep -rhoE '(protocol_id default_id|protocol_id default_protocol_id) = [0-9]+' "$1/dcp" | awk '{print $NF}')
[ -n "$ids" ] || { echo "no protocol ids found under $1/dcp"; exit 1; }
dups=$(sort -n <<<"$ids" | uniq -d)
if [ -n "$dups" ]; then
  for id in $dups; do
    echo "protocol id $id is the default of more than one protocol:"
    grep -rnE "(default_id|default_protocol_id) = $id;" "$1/dcp" | sed 's/^/  /'
  done
  exit 1
fi
echo "$(wc -l <<<"$ids") protocol ids, all distinct"
