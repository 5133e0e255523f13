#!/usr/bin/env bash
# Issue 12, bug 8, over TCP: a waiter stranded by a failover.
#
# 3 coord_replica processes on loopback; coord_client --bench --waiter with
# two sessions: session 0 holds a lock, session 1 waits for it; the leader is
# SIGKILLed and session 0 releases. The waiter must be granted under its
# first session, without an error; prints the time from the kill to its
# grant (and to the holder's release being acknowledged), once per round.
#
# usage: multiprocess_waiter.sh path/to/coord_replica path/to/coord_client [rounds]
set -uo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, claim_port_block, wait_for
replica_bin=${1:?usage: $0 coord_replica coord_client [rounds]}
client_bin=${2:?usage: $0 coord_replica coord_client [rounds]}
rounds=${3:-1}
replicas=3
for b in "$replica_bin" "$client_bin"; do
  [ -x "$b" ] || { echo "FAIL: $b is not an executable (build the coord_replica and coord_client examples)"; exit 1; }
done
scratch  # $dir; every process in $pids is killed on exit (tests/multiprocess.sh)
use_keyring "$dir"  # every process authenticated, by one fresh key
starts=()
fail() {
  echo "FAIL: $*"
  for ((i = 0; i < replicas; i++)); do echo "--- replica $i"; tail -n 10 "$dir/r$i.out" "$dir/r$i.err" 2>/dev/null; done
  exit 1
}
free_ports "$replicas"
servers=()
for ((i = 0; i < replicas; i++)); do servers+=(--server "127.0.0.1:${ports[$i]}"); done
start_replica() {
  local i=$1 args=(--listen "127.0.0.1:${ports[$1]}" --data "$dir/data$1" --quiet)
  for ((j = 0; j < replicas; j++)); do [ "$j" != "$i" ] && args+=(--peer "127.0.0.1:${ports[$j]}"); done
  "$replica_bin" "${args[@]}" >>"$dir/r$i.out" 2>>"$dir/r$i.err" &
  pids[$i]=$!
  starts[$i]=$((${starts[$i]:-0} + 1))
}
leader() {  # the replica whose last role line is LEADER with the highest term, among the live ones
  local best=-1 term i
  for ((i = 0; i < replicas; i++)); do
    kill -0 "${pids[$i]}" 2>/dev/null || continue
    term=$(grep -E '^(LEADER|FOLLOWER) ' "$dir/r$i.out" 2>/dev/null | tail -n 1 | awk '$1 == "LEADER" { sub("term=", "", $2); print $2 }')
    [ -n "$term" ] && [ "$term" -gt "$best" ] && best=$term && the_leader=$i
  done
  [ "$best" -ge 0 ]
}
listening() { [ "$(grep -c '^LISTEN' "$dir/r$1.out" 2>/dev/null)" -ge "$2" ]; }
for ((i = 0; i < replicas; i++)); do start_replica "$i"; done
for ((i = 0; i < replicas; i++)); do wait_for 20 listening "$i" 1 || fail "replica $i did not start"; done
for ((r = 1; r <= rounds; r++)); do
  wait_for 20 leader || fail "no leader"
  victim=$the_leader
  out=$("$client_bin" "${servers[@]}" --id "w$r" --bench --waiter --clients 2 --ttl-ms 6000 --request-timeout-ms 300 \
          --give-up-ms 15000 --failover-cmd "kill -9 ${pids[$victim]}" 2>&1) || fail "round $r: $out"
  wait "${pids[$victim]}" 2>/dev/null
  line=$(grep '^WAITER' <<<"$out") || fail "round $r: no WAITER line: $out"
  echo "round $r: killed replica $victim; $line"
  start_replica "$victim"
  wait_for 20 listening "$victim" "${starts[$victim]}" || fail "replica $victim did not restart"
  sleep 1  # it catches up
done
echo "PASS"
