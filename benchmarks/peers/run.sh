#!/usr/bin/env bash
# dcp's coordination service beside its peers (not part of CI: it installs
# etcd and ZooKeeper). Same machine, same run: the loopback floor, then etcd,
# ZooKeeper and dcp (examples/coord_replica, coord_client), 3 members each on
# 127.0.0.1, data on tmpfs.
#
#   bash benchmarks/peers/run.sh [--quick]      -> table on stdout, CSV in peers.csv
#
# dcp's programs are built in $DCP_BUILD (default: build-peers at the top of
# the repository, RelWithDebInfo) unless DCP_REPLICA and DCP_CLIENT name them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
quick=${1:-}
export DEBIAN_FRONTEND=noninteractive
# dcp's processes authenticate as their transport says; etcd and ZooKeeper run
# here without TLS or authentication, so dcp runs in plaintext too.
export DCP_TRANSPORT=${DCP_TRANSPORT:-plaintext}
need=()
for p in etcd-server etcd-client zookeeperd nodejs npm; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
command -v node >/dev/null && command -v npm >/dev/null && need=("${need[@]/nodejs}") && need=("${need[@]/npm}")
if [ -n "$(echo "${need[@]:-}" | tr -d ' ')" ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends ${need[@]}; fi
(cd "$here" && [ -d node_modules/etcd3 ] && [ -d node_modules/node-zookeeper-client ] || npm install --silent --no-audit --no-fund)

g++ -O2 -std=c++17 -o /tmp/dcp_loopback_floor "$here/loopback_floor.cpp"
repo=$(cd "$here/../.." && pwd)
build=${DCP_BUILD:-$repo/build-peers}
if [ -z "${DCP_REPLICA:-}" ] || [ -z "${DCP_CLIENT:-}" ]; then
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDCP_BUILD_EXAMPLES=ON -DDCP_BUILD_TESTS=OFF \
    -DDCP_BUILD_BENCHMARKS=OFF >/dev/null
  nice cmake --build "$build" --target coord_replica coord_client -j1 >/dev/null
  export DCP_REPLICA=$build/examples/coord_replica DCP_CLIENT=$build/examples/coord_client
fi
csv="$here/peers.csv"
echo "system,operation,clients,p50_ms,p99_ms,ops_per_s" >"$csv"
/tmp/dcp_loopback_floor | awk '/floor_4rtt_p50_us/{p50=$2/1000} /floor_4rtt_p99_us/{p99=$2/1000} END{printf "floor,4 loopback round trips,1,%.3f,%.3f,\n", p50, p99}' >>"$csv"

ops=2000
[ "$quick" = --quick ] && ops=200
bench_dcp() {  # the same operations as bench.js, from coord_client --bench
  local servers=(--server 127.0.0.1:27201 --server 127.0.0.1:27202 --server 127.0.0.1:27203)
  "$DCP_CLIENT" "${servers[@]}" --bench --clients 1 --ops "$ops" &&
    "$DCP_CLIENT" "${servers[@]}" --bench --clients 64 --ops $((ops * 4)) &&
    "$DCP_CLIENT" "${servers[@]}" --bench --lease --ops "$ops" &&
    for w in 1 16; do "$DCP_CLIENT" "${servers[@]}" --bench --watchers "$w" --ops "$ops" || return 1; done &&
    for w in 1 16; do "$DCP_CLIENT" "${servers[@]}" --bench --watchers "$w" --clients 64 --ops $((ops * 4)) || return 1; done &&
    "$DCP_CLIENT" "${servers[@]}" --bench --request-timeout-ms 200 --failover-cmd "$here/clusters.sh kill-leader dcp >/dev/null"
}

trap '"$here/clusters.sh" stop etcd; "$here/clusters.sh" stop zookeeper; "$here/clusters.sh" stop dcp' EXIT
for sys in ${PEERS_SYSTEMS:-etcd zookeeper dcp}; do
  "$here/clusters.sh" start "$sys"
  if [ "$sys" = dcp ]; then
    bench_dcp >>"$csv" || echo "$sys,error,,,," >>"$csv"
  else
    node "$here/bench.js" "$sys" $quick >>"$csv" || echo "$sys,error,,,," >>"$csv"
  fi
  "$here/clusters.sh" stop "$sys"
done
column -s, -t <"$csv"
