#!/usr/bin/env bash
# N dht_node processes on loopback form a DHT through one contact, for each
# router; checked from outside:
#   1. every process prints JOINED, and three processes agree on the r nodes
#      responsible for the test key (the overlay has converged);
#   2. a put on one process is read back by a get on another, and so is a
#      value signed with the putter's key (sput, sget: verified by the reader);
#   3. r-1 of the key's owners are killed at once (SIGKILL): a get from a
#      survivor still returns the value (replicas);
#   4. once the survivors' view no longer names the dead, the last original
#      owner is killed too, so none of the r nodes that held the put is left:
#      a get from a survivor still returns the value (re-replication);
#   5. the owners the DHT names now are all alive, a new put on one survivor is
#      read by a get on another, whose watch on the key reports v1 then v2.
# usage: multiprocess_store.sh path/to/dht_node [N] [replicas] [router...]
set -uo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, claim_port_block
bin=${1:?usage: $0 path/to/dht_node [N] [replicas] [router...]}
n=${2:-20}
r=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
routers=("$@")
[ ${#routers[@]} -eq 0 ] && routers=(chord pastry kademlia tapestry)
[ -x "$bin" ] || { echo "FAIL: $bin is not an executable (build the dht_node example)"; exit 1; }
scratch  # $dir; every process in $pids is killed on exit (tests/multiprocess.sh)
use_keyring "$dir"  # every process authenticated, by one fresh key
source "$(dirname "$0")/dht_nodes.sh"  # ask, owners_of, agree, get_is, start_nodes, stop_nodes ...
router=""

for router in "${routers[@]}"; do
  t0=$SECONDS
  free_ports "$n"
  pids=()
  fds=()
  rm -f "$dir"/out* "$dir"/err* "$dir"/in*
  start_nodes "$router"
  wait_for 40 all_joined || fail "not every process joined within 40 s"
  key="key-$router-$RANDOM"
  probe=(1 $((n / 2)) $((n - 1)))
  wait_for 40 agree "$key" || fail "three processes do not agree on the owners of $key within 40 s (last: ${owners[*]})"
  echo "[+$((SECONDS - t0))s] $router: $n processes joined and agree on the owners of $key after $((SECONDS - t0)) s"

  # 2. put on one process, get from another
  putter=1
  ask "$putter" "put $key v1" "PUT $key " 20 || fail "no answer to put"
  [[ "$reply" == "PUT $key ok "* ]] || fail "put failed: $reply"
  getter=$((n - 2))
  get_is "$getter" "$key" v1 || fail "get from node $getter: '$reply', want v1"
  # a value signed by the putter's key (BEP 44 style) is read, verified, from another process
  ask "$putter" "pubkey" "PUBKEY " 5 || fail "no answer to pubkey"
  pub=${reply#PUBKEY }
  ask "$putter" "sput $key s1" "SPUT $key " 20 || fail "no answer to sput"
  [[ "$reply" == "SPUT $key ok "* ]] || fail "signed put failed: $reply"
  ask "$getter" "sget $pub $key" "SGET $key " 20 || fail "no answer to sget"
  [[ "$reply" == "SGET $key ok s1 "* ]] || fail "signed get from node $getter: '$reply', want s1"

  # 3. kill r-1 owners at once
  owners_of "$putter" "$key" || fail "no owners for $key: $reply"
  original=("${owners[@]}")
  owner_idx=()
  for a in "${original[@]}"; do owner_idx+=("$(index_of "$a")") || fail "owner $a is not one of our processes"; done
  for ((k = 0; k < r - 1; k++)); do kill -9 "${pids[${owner_idx[$k]}]}"; done
  echo "[+$((SECONDS - t0))s] $router: killed $((r - 1)) of the owners (nodes ${owner_idx[*]:0:$((r - 1))}) with SIGKILL"
  for ((k = 0; k < r - 1; k++)); do wait "${pids[${owner_idx[$k]}]}" 2>/dev/null; done
  survivor=$(pick_survivor "${owner_idx[@]}") || fail "no survivor"
  t1=$SECONDS
  wait_for 30 get_is "$survivor" "$key" v1 || fail "after $((r - 1)) owners died, get from node $survivor: '$reply', want v1"
  echo "[+$((SECONDS - t0))s] $router: get from node $survivor returns v1 $((SECONDS - t1)) s after the kill (replicas)"

  # 4. once the DHT names only live owners (and has had time to re-replicate), kill the last original owner
  wait_for 40 owners_alive "$survivor" "$key" || fail "node $survivor still names dead owners: ${owners[*]}"
  sleep 3  # three sync rounds: the new owners receive the item
  last=${owner_idx[$((r - 1))]}
  kill -9 "${pids[$last]}"
  wait "${pids[$last]}" 2>/dev/null
  echo "[+$((SECONDS - t0))s] $router: killed the last original owner (node $last): none of ${original[*]} is alive"
  for j in "${owner_idx[@]}"; do alive "$j" && fail "node $j should be dead"; done
  survivor=$(pick_survivor "${owner_idx[@]}" "$survivor") || fail "no survivor"
  t1=$SECONDS
  wait_for 30 get_is "$survivor" "$key" v1 || fail "after every original owner died, get from node $survivor: '$reply', want v1"
  echo "[+$((SECONDS - t0))s] $router: get from node $survivor returns v1 $((SECONDS - t1)) s after the last kill (re-replication)"

  # 5. the DHT heals: owners are live nodes, and a new write is read back elsewhere
  wait_for 40 owners_alive "$survivor" "$key" || fail "node $survivor still names dead owners: ${owners[*]}"
  other=$(pick_survivor "${owner_idx[@]}" "$survivor") || fail "no other survivor"
  echo "watch $key" >&"${fds[$other]}"  # node $other reports the value it sees change
  wait_for 20 grep -q "^WATCH $key v1\$" "$dir/out$other" || fail "node $other's watch did not report v1"
  ask "$survivor" "put $key v2" "PUT $key " 20 || fail "no answer to the second put"
  [[ "$reply" == "PUT $key ok "* ]] || fail "second put failed: $reply"
  wait_for 20 get_is "$other" "$key" v2 || fail "get from node $other after the second put: '$reply', want v2"
  wait_for 20 grep -q "^WATCH $key v2\$" "$dir/out$other" || fail "node $other's watch did not report v2"

  stop_nodes
  echo "ok $router: $n processes, put/get across processes, value survives the loss of all $r original owners ($((SECONDS - t0)) s)"
done
