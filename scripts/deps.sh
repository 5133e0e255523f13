#!/usr/bin/env bash
# Installs, on Debian 12 as root, whichever of dcp's build dependencies are missing.
set -euo pipefail
# clang: CI's sanitizer pass; clang-format-14: the layout check (tests/core/format_check.sh); libcli11-dev: dcpctl's command line (tools/, header-only)
packages=(cmake g++ clang clang-format-14 make libasio-dev libcereal-dev doctest-dev libssl-dev libcli11-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "dcp: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
