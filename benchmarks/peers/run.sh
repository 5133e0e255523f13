#!/usr/bin/env bash
# The peers' side of dcp's coordination benchmark (not part of CI: it
# installs etcd and ZooKeeper). Same machine, same run: the loopback floor,
# etcd and ZooKeeper, 3 members each on 127.0.0.1, data on tmpfs.
#
#   bash benchmarks/peers/run.sh [--quick]      -> table on stdout, CSV in peers.csv
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
quick=${1:-}
export DEBIAN_FRONTEND=noninteractive
need=()
for p in etcd-server etcd-client zookeeperd nodejs npm; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
command -v node >/dev/null && command -v npm >/dev/null && need=("${need[@]/nodejs}") && need=("${need[@]/npm}")
if [ -n "$(echo "${need[@]:-}" | tr -d ' ')" ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends ${need[@]}; fi
(cd "$here" && [ -d node_modules/etcd3 ] && [ -d node_modules/node-zookeeper-client ] || npm install --silent --no-audit --no-fund)

g++ -O2 -std=c++17 -o /tmp/dcp_loopback_floor "$here/loopback_floor.cpp"
csv="$here/peers.csv"
echo "system,operation,clients,p50_ms,p99_ms,ops_per_s" >"$csv"
/tmp/dcp_loopback_floor | awk '/floor_4rtt_p50_us/{p50=$2/1000} /floor_4rtt_p99_us/{p99=$2/1000} END{printf "floor,4 loopback round trips,1,%.3f,%.3f,\n", p50, p99}' >>"$csv"

for sys in etcd zookeeper; do
  trap '"$here/clusters.sh" stop etcd; "$here/clusters.sh" stop zookeeper' EXIT
  "$here/clusters.sh" start "$sys"
  node "$here/bench.js" "$sys" $quick >>"$csv" || echo "$sys,error,,,," >>"$csv"
  "$here/clusters.sh" stop "$sys"
done
column -s, -t <"$csv"
