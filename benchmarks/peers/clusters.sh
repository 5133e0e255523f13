#!/usr/bin/env bash
# Starts and stops the peer clusters on loopback, data on tmpfs (/dev/shm):
#   clusters.sh start etcd|zookeeper|dcp     three members each
#   clusters.sh stop  etcd|zookeeper|dcp
#   clusters.sh kill-leader etcd|zookeeper|dcp   SIGKILL the current leader; prints its pid
# etcd clients: 127.0.0.1:23791-23793. ZooKeeper clients: 127.0.0.1:21811-21813.
# dcp: three coord_replica processes (the binary in $DCP_REPLICA) on
# 127.0.0.1:27201-27203, clients and replicas on the same ports.
set -euo pipefail
root=/dev/shm/dcp-peers
what=${2:-}

start_etcd() {
  mkdir -p "$root"
  local cluster="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
  for i in 1 2 3; do
    rm -rf "$root/etcd$i"
    etcd --name "e$i" --data-dir "$root/etcd$i" \
      --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
      --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token dcp-bench \
      --log-level error >"$root/etcd$i.log" 2>&1 &
    echo $! >"$root/etcd$i.pid"
  done
  for _ in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:23791 put /ready 1 >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "etcd did not start; see $root/etcd*.log" >&2
  return 1
}

start_zookeeper() {
  mkdir -p "$root"
  for i in 1 2 3; do
    rm -rf "$root/zk$i"
    mkdir -p "$root/zk$i"
    echo "$i" >"$root/zk$i/myid"
    cat >"$root/zk$i.cfg" <<CFG
tickTime=200
initLimit=50
syncLimit=10
dataDir=$root/zk$i
clientPort=2181$i
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok
server.1=127.0.0.1:28881:38881
server.2=127.0.0.1:28882:38882
server.3=127.0.0.1:28883:38883
CFG
    java -Xmx256m -Dzookeeper.log.dir="$root" -Dlog4j.configuration=file:/etc/zookeeper/conf/log4j.properties \
      -cp "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar" org.apache.zookeeper.server.quorum.QuorumPeerMain \
      "$root/zk$i.cfg" >"$root/zk$i.log" 2>&1 &
    echo $! >"$root/zk$i.pid"
  done
  for _ in $(seq 150); do
    for i in 1 2 3; do
      zk_mode "$i" | grep -q 'Mode: leader' && return 0
    done
    sleep 0.2
  done
  echo "ZooKeeper did not elect a leader; see $root/zk*.log" >&2
  return 1
}

start_dcp() {
  mkdir -p "$root"
  local bin=${DCP_REPLICA:?set DCP_REPLICA to the coord_replica binary}
  for i in 1 2 3; do
    rm -rf "$root/dcp$i"
    local args=(--listen "127.0.0.1:2720$i" --data "$root/dcp$i" --quiet)
    for j in 1 2 3; do [ "$j" != "$i" ] && args+=(--peer "127.0.0.1:2720$j"); done
    "$bin" "${args[@]}" >"$root/dcp$i.out" 2>"$root/dcp$i.log" &
    echo $! >"$root/dcp$i.pid"
  done
  for _ in $(seq 150); do
    for i in 1 2 3; do dcp_role "$i" | grep -q LEADER && return 0; done
    sleep 0.2
  done
  echo "dcp did not elect a leader; see $root/dcp*.log" >&2
  return 1
}

dcp_role() {  # the last LEADER/FOLLOWER line coord_replica $1 printed
  grep -E '^(LEADER|FOLLOWER) ' "$root/dcp$1.out" 2>/dev/null | tail -n 1
}

zk_mode() {  # the "srvr" four-letter answer of member $1, or nothing
  (exec 3<>"/dev/tcp/127.0.0.1/2181$1" && echo srvr >&3 && cat <&3) 2>/dev/null || true
}

stop_all() {
  local prefix=$1
  for f in "$root/$prefix"*.pid; do
    [ -f "$f" ] || continue
    kill -9 "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

leader_pid() {
  case $what in
    etcd)
      for i in 1 2 3; do
        local st
        st=$(ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:2379$i" endpoint status -w json 2>/dev/null) || continue
        if echo "$st" | grep -q '"leader":\([0-9]*\).*' && [ "$(echo "$st" | sed -E 's/.*"member_id":([0-9]+).*/\1/')" = "$(echo "$st" | sed -E 's/.*"leader":([0-9]+).*/\1/')" ]; then
          cat "$root/etcd$i.pid"; return 0
        fi
      done ;;
    zookeeper)
      for i in 1 2 3; do
        if zk_mode "$i" | grep -q 'Mode: leader'; then
          cat "$root/zk$i.pid"; return 0
        fi
      done ;;
    dcp)  # the live replica whose last role line is LEADER with the highest term
      local best=0 pid=
      for i in 1 2 3; do
        kill -0 "$(cat "$root/dcp$i.pid" 2>/dev/null)" 2>/dev/null || continue
        local t
        t=$(dcp_role "$i" | awk '$1 == "LEADER" { sub("term=", "", $2); print $2 }')
        [ -n "$t" ] && [ "$t" -gt "$best" ] && best=$t && pid=$(cat "$root/dcp$i.pid")
      done
      [ -n "$pid" ] && echo "$pid" && return 0 ;;
  esac
  return 1
}

case ${1:-} in
  start) case $what in etcd) start_etcd ;; zookeeper) start_zookeeper ;; dcp) start_dcp ;; *) exit 2 ;; esac ;;
  stop) case $what in etcd) stop_all etcd ;; zookeeper) stop_all zk ;; dcp) stop_all dcp ;; *) exit 2 ;; esac ;;
  kill-leader) pid=$(leader_pid) && kill -9 "$pid" && echo "$pid" ;;
  *) echo "usage: $0 start|stop|kill-leader etcd|zookeeper|dcp" >&2; exit 2 ;;
esac
