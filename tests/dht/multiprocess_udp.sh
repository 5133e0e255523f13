#!/usr/bin/env bash
# N dht_node processes run Kademlia over UDP datagrams (--transport
# udp:plaintext: one frame per datagram, nothing authenticated, so named
# plaintext explicitly, as every plaintext use is), on loopback; checked from
# outside:
#   1. every process prints JOINED, and three processes agree on the r nodes
#      responsible for the test key (the overlay converged over UDP);
#   2. a put on one process is read back by a get on another;
#   3. garbage datagrams to every process's port (not a dcp frame, a frame cut
#      short, a frame on the transport's protocol) change nothing: every
#      process still answers, and a get still returns the value;
#   4. r-1 of the key's owners are killed at once (SIGKILL): their RPCs now
#      go unanswered (UDP never says a peer is gone), and a get from a
#      survivor still returns the value (replicas, Kademlia's timeouts);
#   5. a value too large for a datagram is refused at put, and a new put on
#      one survivor is read by a get on another.
# usage: multiprocess_udp.sh path/to/dht_node [N] [replicas] [plaintext|keyring]
# (keyring: --transport udp:keyring with a fresh key file, every datagram sealed)
set -uo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, claim_port_block
bin=${1:?usage: $0 path/to/dht_node [N] [replicas]}
n=${2:-10}
r=${3:-3}
[ -x "$bin" ] || { echo "FAIL: $bin is not an executable (build the dht_node example)"; exit 1; }
scratch  # $dir; every process in $pids is killed on exit (tests/multiprocess.sh)
if [ "${4:-plaintext}" = keyring ]; then
  new_key_file "$dir/cluster.keys"
  export DCP_TRANSPORT="udp:keyring:$dir/cluster.keys"
else
  export DCP_TRANSPORT=udp:plaintext  # plaintext by name, as every plaintext use is (docs/security.md)
fi
source "$(dirname "$0")/dht_nodes.sh"  # ask, owners_of, agree, get_is, start_nodes, stop_nodes ...

datagram() {  # datagram PORT HEX: one UDP datagram of those bytes to 127.0.0.1:PORT
  printf "$(echo "$2" | sed 's/../\\x&/g')" >"/dev/udp/127.0.0.1/$1"
}

t0=$SECONDS
free_ports "$n"
start_nodes kademlia
for ((i = 0; i < n; i++)); do
  wait_for 10 grep -q '^LISTEN' "$dir/out$i" || fail "node $i did not start"
done
# 1. joined, and converged
wait_for 40 all_joined || fail "not every process joined within 40 s"
key="udp-key-$RANDOM"
probe=(1 $((n / 2)) $((n - 1)))
wait_for 40 agree "$key" || fail "three processes do not agree on the owners of $key within 40 s (last: ${owners[*]})"
echo "[+$((SECONDS - t0))s] kademlia over UDP: $n processes joined and agree on the owners of $key"

# 2. put on one process, get from another
putter=1
ask "$putter" "put $key v1" "PUT $key " 20 || fail "no answer to put"
[[ "$reply" == "PUT $key ok "* ]] || fail "put failed: $reply"
getter=$((n - 2))
get_is "$getter" "$key" v1 || fail "get from node $getter: '$reply', want v1"
echo "[+$((SECONDS - t0))s] put on node $putter, read back by a get on node $getter"

# 3. garbage datagrams to every port: dropped, and everyone still serves
for ((i = 0; i < n; i++)); do
  datagram "${ports[$i]}" 474554202f20485454502f312e310d0a   # "GET / HTTP/1.1": bad magic
  datagram "${ports[$i]}" dc5001000700030010000000414141     # a header promising 16 bytes, 3 sent
  datagram "${ports[$i]}" dc50010000000100020000000107       # protocol 0: the transport's own
done
for ((i = 0; i < n; i++)); do
  alive "$i" || fail "node $i died of garbage datagrams"
  ask "$i" status "STATUS " 10 || fail "node $i does not answer after the garbage"
  [[ "$reply" == "STATUS joined "* ]] || fail "node $i: $reply"
done
get_is $((n - 1)) "$key" v1 || fail "get after the garbage: '$reply', want v1"
echo "[+$((SECONDS - t0))s] $((3 * n)) garbage datagrams changed nothing: every process serves, the value reads back"

# 4. kill r-1 owners at once: their datagrams fall into the void
owners_of "$putter" "$key" || fail "no owners for $key: $reply"
owner_idx=()
for a in "${owners[@]}"; do owner_idx+=("$(index_of "$a")") || fail "owner $a is not one of our processes"; done
for ((k = 0; k < r - 1; k++)); do kill -9 "${pids[${owner_idx[$k]}]}"; done
for ((k = 0; k < r - 1; k++)); do wait "${pids[${owner_idx[$k]}]}" 2>/dev/null; done
survivor=$(pick_survivor "${owner_idx[@]}") || fail "no survivor"
t1=$SECONDS
wait_for 30 get_is "$survivor" "$key" v1 || fail "after $((r - 1)) owners died, get from node $survivor: '$reply', want v1"
echo "[+$((SECONDS - t0))s] killed $((r - 1)) owners (nodes ${owner_idx[*]:0:$((r - 1))}); get from node $survivor returns v1 $((SECONDS - t1)) s later"

# 5. a value larger than a datagram holds is refused; a new put is read elsewhere
big=$(head -c 2000 /dev/zero | tr '\0' x)
ask "$survivor" "put big-$key $big" "PUT big-$key " 10 || fail "no answer to the oversized put"
[[ "$reply" == "PUT big-$key error "* ]] || fail "an oversized put was not refused: ${reply:0:80}"
other=$(pick_survivor "${owner_idx[@]}" "$survivor") || fail "no other survivor"
ask "$survivor" "put $key v2" "PUT $key " 20 || fail "no answer to the second put"
[[ "$reply" == "PUT $key ok "* ]] || fail "second put failed: $reply"
wait_for 20 get_is "$other" "$key" v2 || fail "get from node $other after the second put: '$reply', want v2"

stop_nodes
echo "ok kademlia over UDP: $n processes, put/get across processes, garbage datagrams dropped, value survives $((r - 1)) owners killed ($((SECONDS - t0)) s)"
