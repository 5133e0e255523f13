#!/usr/bin/env bash
# K processes on loopback take turns incrementing a counter in a shared file,
# under each mutual-exclusion algorithm; checked from outside:
#   - every process prints DONE (all its increments went through);
#   - the final count equals K x increments (no lost update);
#   - nobody printed OVERLAP (two processes inside at once).
# usage: multiprocess_counter.sh path/to/mutex_counter [K] [increments] [algorithm...]
set -uo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, claim_port_block
bin=${1:?usage: $0 path/to/mutex_counter [K] [increments] [algorithm...]}
k=${2:-5}
n=${3:-10}
shift $(( $# < 3 ? $# : 3 ))
algorithms=("$@")
[ ${#algorithms[@]} -eq 0 ] && algorithms=(centralized ricart_agrawala lamport suzuki_kasami raymond maekawa token_ring)
[ -x "$bin" ] || { echo "FAIL: $bin is not an executable (build the mutex_counter example)"; exit 1; }
scratch  # $dir; every process in $pids is killed on exit (tests/multiprocess.sh)
use_keyring "$dir"  # every process authenticated, by one fresh key

for algorithm in "${algorithms[@]}"; do
 for attempt in 1 2 3; do  # a port probed free may be taken before the process binds it: try new ports
  free_ports "$k"
  file="$dir/counter-$algorithm"
  echo 0 > "$file"
  pids=()
  for ((i = 0; i < k; i++)); do
    args=(--algorithm "$algorithm" --listen "127.0.0.1:${ports[$i]}" --file "$file" --increments "$n")
    for ((j = 0; j < k; j++)); do [ "$j" != "$i" ] && args+=(--peer "127.0.0.1:${ports[$j]}"); done
    "$bin" "${args[@]}" >"$dir/out-$algorithm-$i" 2>"$dir/err-$algorithm-$i" &
    pids[$i]=$!
  done
  deadline=$((SECONDS + 60))
  while true; do
    finished=0
    for ((i = 0; i < k; i++)); do grep -q '^DONE' "$dir/out-$algorithm-$i" 2>/dev/null && finished=$((finished + 1)); done
    overlap=$(grep -l '^OVERLAP' "$dir"/out-"$algorithm"-* 2>/dev/null)
    [ -n "$overlap" ] && break
    [ "$finished" -eq "$k" ] && break
    grep -q "cannot listen" "$dir"/err-"$algorithm"-* 2>/dev/null && break
    [ $SECONDS -ge $deadline ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  count=$(cat "$file")
  if grep -q "cannot listen" "$dir"/err-"$algorithm"-* 2>/dev/null && [ "$attempt" -lt 3 ]; then
    echo "retry $algorithm: a port was taken before it was bound"
    rm -f "$dir"/out-"$algorithm"-* "$dir"/err-"$algorithm"-*
    continue
  fi
  if [ -n "$overlap" ] || [ "$finished" -ne "$k" ] || [ "$count" -ne $((k * n)) ]; then
    echo "FAIL $algorithm: finished $finished/$k, count $count (want $((k * n))), overlap: ${overlap:-none}"
    for ((i = 0; i < k; i++)); do echo "--- $i"; tail -n 5 "$dir/out-$algorithm-$i"; tail -n 5 "$dir/err-$algorithm-$i"; done
    exit 1
  fi
  echo "ok $algorithm: $k processes, count $count, no overlap"
  break
 done
done
