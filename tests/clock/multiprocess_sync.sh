#!/usr/bin/env bash
# Clock synchronization over real TCP on loopback, checked from outside.
#   cristian: one reference server and K-1 clients. Processes on one host
#     share one steady clock, so the true offset is zero: every line of every
#     synchronized client must show |offset_ns| <= bound_ns.
#   berkeley: K members with Bully; all follow the highest as daemon; it is
#     killed (-9); within 10 s the others follow a new daemon. The group's
#     average of one shared clock must stay within 5 ms of it.
# usage: multiprocess_sync.sh path/to/clock_node [K]
set -uo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, claim_port_block
bin=${1:?usage: $0 path/to/clock_node [K]}
k=${2:-4}
[ -x "$bin" ] || { echo "FAIL: $bin is not an executable (build the clock_node example)"; exit 1; }
scratch  # $dir; every process in $pids is killed on exit (tests/multiprocess.sh)
use_keyring "$dir"  # every process authenticated, by one fresh key

stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  pids=()
}
last_field() {  # last_field FILE NAME: NAME=value of the file's last SYNC line
  grep '^SYNC' "$1" 2>/dev/null | tail -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p"
}
port_taken() { grep -q "cannot listen\|address in use\|Address already in use" "$dir"/err-* 2>/dev/null; }

# ---- cristian
for attempt in 1 2 3; do
  free_ports "$k"
  rm -f "$dir"/out-* "$dir"/err-*
  "$bin" --algorithm cristian --listen "127.0.0.1:${ports[0]}" >"$dir/out-0" 2>"$dir/err-0" &
  pids+=($!)
  for ((i = 1; i < k; i++)); do
    "$bin" --algorithm cristian --listen "127.0.0.1:${ports[$i]}" --server "127.0.0.1:${ports[0]}" >"$dir/out-$i" 2>"$dir/err-$i" &
    pids+=($!)
  done
  sleep 4
  stop_all
  if port_taken && [ "$attempt" -lt 3 ]; then echo "retry cristian: a port was taken"; continue; fi
  break
done
for ((i = 1; i < k; i++)); do
  synced=$(grep -c '^SYNC synced=1' "$dir/out-$i")
  bad=$(awk '/^SYNC synced=1/ { split($3, o, "="); split($4, b, "="); off = o[2] < 0 ? -o[2] : o[2]; if (off > b[2]) print }' "$dir/out-$i")
  if [ "$synced" -lt 5 ] || [ -n "$bad" ]; then
    echo "FAIL cristian client $i: $synced synchronized lines; beyond the bound: ${bad:-none}"
    tail -n 5 "$dir/out-$i" "$dir/err-$i"
    exit 1
  fi
done
echo "ok cristian: $((k - 1)) clients, every synchronized line within its bound (true offset 0)"

# ---- berkeley
for attempt in 1 2 3; do
  free_ports "$k"
  rm -f "$dir"/out-* "$dir"/err-*
  for ((i = 0; i < k; i++)); do
    args=(--algorithm berkeley --listen "127.0.0.1:${ports[$i]}")
    for ((j = 0; j < k; j++)); do [ "$j" != "$i" ] && args+=(--peer "127.0.0.1:${ports[$j]}"); done
    "$bin" "${args[@]}" >"$dir/out-$i" 2>"$dir/err-$i" &
    pids[$i]=$!
  done
  sleep 1
  if port_taken && [ "$attempt" -lt 3 ]; then echo "retry berkeley: a port was taken"; stop_all; continue; fi
  break
done
# The daemon: the member with the highest address (Bully).
top=0
for ((i = 1; i < k; i++)); do [ "${ports[$i]}" -gt "${ports[$top]}" ] && top=$i; done
want="127.0.0.1:${ports[$top]}"
deadline=$((SECONDS + 15))
while true; do
  following=0
  for ((i = 0; i < k; i++)); do [ "$(last_field "$dir/out-$i" round_daemon)" == "$want" ] && following=$((following + 1)); done
  [ "$following" -eq "$k" ] && break
  if [ $SECONDS -ge $deadline ]; then
    echo "FAIL berkeley: $following/$k follow $want"; for ((i = 0; i < k; i++)); do tail -n 2 "$dir/out-$i" "$dir/err-$i"; done; exit 1
  fi
  sleep 0.2
done
echo "ok berkeley: all $k follow daemon $want"
kill -9 "${pids[$top]}"
wait "${pids[$top]}" 2>/dev/null
unset "pids[$top]"
: >"$dir/out-$top"
second=-1
for ((i = 0; i < k; i++)); do [ "$i" != "$top" ] && { [ "$second" -lt 0 ] || [ "${ports[$i]}" -gt "${ports[$second]}" ]; } && second=$i; done
want="127.0.0.1:${ports[$second]}"
deadline=$((SECONDS + 10))
while true; do
  following=0
  for ((i = 0; i < k; i++)); do [ "$i" != "$top" ] && [ "$(last_field "$dir/out-$i" round_daemon)" == "$want" ] && following=$((following + 1)); done
  [ "$following" -eq $((k - 1)) ] && break
  if [ $SECONDS -ge $deadline ]; then
    echo "FAIL berkeley after the daemon was killed: $following/$((k - 1)) follow $want"
    for ((i = 0; i < k; i++)); do tail -n 2 "$dir/out-$i" "$dir/err-$i"; done; exit 1
  fi
  sleep 0.2
done
sleep 1
stop_all
for ((i = 0; i < k; i++)); do
  [ "$i" == "$top" ] && continue
  bad=$(awk '/^SYNC synced=1/ { split($3, o, "="); off = o[2] < 0 ? -o[2] : o[2]; if (off > 5000000) print }' "$dir/out-$i")
  if [ -n "$bad" ]; then echo "FAIL berkeley member $i: the average moved off the shared clock: $bad"; exit 1; fi
done
echo "ok berkeley: daemon killed, all $((k - 1)) others follow $want; the average stays within 5 ms of the shared clock"
