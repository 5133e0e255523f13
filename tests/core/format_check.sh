#!/usr/bin/env bash
# Fails, naming the files, when a C++ file under include/, tests/, examples/,
# benchmarks/ or tools/ is not laid out as .clang-format says.
# Fix with: clang-format-14 -i FILE...
set -euo pipefail
clang_format=$1
cd "$2"
mapfile -t files < <(find include tests examples benchmarks tools -name '*.hpp' -o -name '*.cpp' | sort)
bad=()
for f in "${files[@]}"; do
  "$clang_format" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  echo "not formatted (run: $clang_format -i FILE): ${bad[*]}"
  exit 1
fi
echo "${#files[@]} files formatted as .clang-format says"
