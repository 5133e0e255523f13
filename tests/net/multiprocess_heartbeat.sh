#!/usr/bin/env bash
# Three heartbeat_node processes on loopback, observed from outside:
#   1. each reports the other two UP, and the state holds (last event UP);
#   2. one is killed with SIGKILL: both survivors report it DOWN within a bound;
#   3. impostors on its port, one holding another key and one in plaintext,
#      are not believed: for 2 s each (four time-outs) the survivors still
#      report it DOWN (the nodes run the keyring transport);
#   4. it is restarted on the same port: both survivors report it UP again;
#   5. SIGTERM stops all three, each exits with status 0.
# usage: multiprocess_heartbeat.sh path/to/heartbeat_node
set -uo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, claim_port_block
bin=${1:?usage: $0 path/to/heartbeat_node}
[ -x "$bin" ] || { echo "FAIL: $bin is not an executable (build the heartbeat_node target)"; exit 1; }
scratch  # $dir; every process in $pids is killed on exit (tests/multiprocess.sh)
fail() {
  echo "FAIL: $*"
  for i in 0 1 2; do echo "--- node $i stdout"; cat "$dir/out$i" 2>/dev/null; echo "--- node $i stderr"; cat "$dir/err$i" 2>/dev/null; done
  exit 1
}

# Three free loopback ports: nobody accepts on them now (a refused connect).
free_ports 3
addr() { echo "127.0.0.1:${ports[$1]}"; }
new_key_file "$dir/cluster.keys"
new_key_file "$dir/other.keys"

start() {  # start node i (appending to its output) [with transport T instead of the cluster's key]
  local i=$1  # its own statement: in "local i=$1 args=(... $i ...)" the args would see the caller's i
  local args=(--listen "$(addr "$i")" --interval 100ms --timeout 500ms --transport "${2:-keyring:$dir/cluster.keys}")
  for j in 0 1 2; do [ "$j" != "$i" ] && args+=(--peer "$(addr "$j")"); done
  "$bin" "${args[@]}" >>"$dir/out$i" 2>>"$dir/err$i" &
  pids[$i]=$!
}
last_event() {  # last UP/DOWN line node i printed about node j
  grep -E "^(UP|DOWN) $(addr "$2")\$" "$dir/out$1" 2>/dev/null | tail -n 1 | cut -d' ' -f1
}
wait_for() {  # wait_for SECONDS COMMAND...: poll every 50 ms
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.05
  done
}
all_up() {
  for i in 0 1 2; do for j in 0 1 2; do
    [ "$i" = "$j" ] && continue
    [ "$(last_event "$i" "$j")" = UP ] || return 1
  done; done
}
survivors_say() {  # survivors_say EVENT: nodes 0 and 1 last reported node 2 as EVENT
  [ "$(last_event 0 2)" = "$1" ] && [ "$(last_event 1 2)" = "$1" ]
}

for i in 0 1 2; do start "$i"; done
wait_for 10 all_up || fail "not every node reported the two others UP"
sleep 1  # ten heartbeat intervals: the healthy state holds (a machine stalled past the
         # time-out may cause a false DOWN, which the next heartbeat must undo)
wait_for 5 all_up || fail "a healthy peer stayed suspected"
echo "all three nodes see each other UP"

kill -9 "${pids[2]}"
wait "${pids[2]}" 2>/dev/null
t0=$(date +%s%N)
# Detection takes about the 500 ms time-out; the bound leaves room for a loaded machine.
wait_for 5 survivors_say DOWN || fail "the survivors did not report the killed node DOWN within 5 s"
echo "killed node reported DOWN by both survivors after $(( ($(date +%s%N) - t0) / 1000000 )) ms"

for impostor in "keyring:$dir/other.keys" plaintext; do
  start 2 "$impostor"
  sleep 2
  survivors_say DOWN || fail "an impostor on the killed node's port ($impostor) was believed"
  kill -9 "${pids[2]}"
  wait "${pids[2]}" 2>/dev/null
done
echo "impostors on its port, with another key and in plaintext, were not believed for 2 s each"

start 2
wait_for 10 survivors_say UP || fail "the survivors did not report the restarted node UP again"
wait_for 10 all_up || fail "the restarted node did not see the survivors UP"
echo "restarted node reported UP again"

for i in 0 1 2; do kill -TERM "${pids[$i]}"; done
for i in 0 1 2; do
  wait "${pids[$i]}"
  status=$?
  [ $status -eq 0 ] || fail "node $i exited with status $status after SIGTERM"
  grep -q '^STOP$' "$dir/out$i" || fail "node $i did not report STOP"
done
pids=()
echo "PASS"
