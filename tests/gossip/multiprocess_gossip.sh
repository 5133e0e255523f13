#!/usr/bin/env bash
# N gossip_node processes on loopback (HyParView + Plumtree + Push-Sum over
# TCP), steered by signals and checked from outside:
#   1. all N start on ports the OS chooses and join through one contact;
#      the overlay (links both ends list) becomes connected;
#   2. one broadcast and a Push-Sum epoch: every process delivers the
#      broadcast, and every process's average is within 1e-6 (relative) of
#      the true average of all N values; then a process holding another key
#      and one in plaintext try to join and broadcast: neither joins, nobody
#      lists or hears them;
#   3. a third of the processes, the contact among them, are killed (SIGKILL),
#      and one more is frozen (SIGSTOP: its sockets stay open, so only
#      keep-alive silence reveals it); the survivors' active views drop every
#      dead process and the survivors' overlay is connected again (repair from
#      the passive views);
#   4. a second broadcast reaches every survivor; a new Push-Sum epoch (the
#      dead's mass is dropped with the old epoch) gives every survivor the
#      true average of the survivors' values within 1e-6;
#   5. SIGTERM: each survivor prints its final estimate (still within 1e-6,
#      in the last epoch) and exits with status 0; each delivered exactly the
#      two broadcasts, once each.
# usage: multiprocess_gossip.sh path/to/gossip_node [N]
set -uo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, use_keyring
bin=${1:?usage: $0 path/to/gossip_node [N]}
n=${2:-20}
[ -x "$bin" ] || { echo "FAIL: $bin is not an executable (build the gossip_node example)"; exit 1; }
[ "$n" -ge 6 ] || { echo "FAIL: N must be at least 6"; exit 1; }
scratch  # $dir; every process in $pids is killed on exit (tests/multiprocess.sh)
use_keyring "$dir"  # every process authenticated, by one fresh key
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }
fail() {
  echo "FAIL ($(elapsed)): $*"
  for ((i = 0; i < n; i++)); do
    echo "--- node $i (${addr[$i]:-?}, $(is_dead "$i" && echo killed || echo live)) stdout, last lines"
    tail -n 6 "$dir/out$i" 2>/dev/null
    [ -s "$dir/err$i" ] && { echo "--- node $i stderr"; tail -n 5 "$dir/err$i"; }
  done
  exit 1
}
wait_for() {  # wait_for SECONDS COMMAND...: poll every 100 ms
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}

# Values: distinct, not round, of mixed magnitude.
value() { awk -v i="$1" 'BEGIN { printf "%.6f", 10 + (i * 7919 % 1000) / 7.0 + i * i / 3.0 }'; }
addr=()
dead=()
is_dead() { [[ " ${dead[*]} " == *" $1 "* ]]; }
live() { for ((i = 0; i < n; i++)); do is_dead "$i" || echo "$i"; done; }

start() {  # start node i, with --contact for all but node 0
  local i=$1 args=(--listen 127.0.0.1:0 --value "$(value "$1")" --round 50ms)
  [ "$i" -gt 0 ] && args+=(--contact "${addr[0]}")
  "$bin" "${args[@]}" >"$dir/out$i" 2>"$dir/err$i" &
  pids[$i]=$!
}
listening() { grep -q '^LISTEN ' "$dir/out$1" 2>/dev/null; }
all() {  # all PREDICATE: holds for every live node
  local i
  for i in $(live); do "$@" "$i" || return 1; done
}
joined() { grep -q '^JOINED$' "$dir/out$1"; }
delivered() { grep -q "^DELIVER $2 " "$dir/out$1"; }  # delivered i PAYLOAD
converged() { grep -q "^CONVERGED $2 " "$dir/out$1"; }  # converged i EPOCH
has_converged() { converged "$2" "$1"; }
has_delivered() { delivered "$2" "$1"; }
# The live overlay: every live node's last VIEW names live nodes only, and the
# links that both ends list connect every live node.
overlay_ok() {
  local i live_addrs=()
  for i in $(live); do live_addrs+=("${addr[$i]}"); done
  for i in $(live); do
    echo "${addr[$i]} $(grep '^VIEW' "$dir/out$i" | tail -n 1 | cut -s -d' ' -f2-)"
  done | awk -v live="${live_addrs[*]}" '
    BEGIN { n = split(live, L, " "); for (i = 1; i <= n; i++) alive[L[i]] = 1 }
    { for (k = 2; k <= NF; k++) { if (!($k in alive)) bad = 1; edge[$1, $k] = 1 } }
    END {
      if (bad) exit 1
      seen[L[1]] = 1; queue[1] = L[1]; head = 1; tail = 1
      while (head <= tail) {
        u = queue[head++]
        for (i = 1; i <= n; i++) {
          v = L[i]
          if (!(v in seen) && ((u, v) in edge) && ((v, u) in edge)) { seen[v] = 1; queue[++tail] = v }
        }
      }
      exit tail == n ? 0 : 1
    }'
}
true_average() {  # of the live nodes' values
  local i
  for i in $(live); do value "$i"; echo; done | awk '{ s += $1; k++ } END { printf "%.17g", s / k }'
}
# check_estimates KIND EPOCH TRUTH: the KIND (CONVERGED or FINAL) line of
# every live node is in EPOCH and within 1e-6 (relative) of TRUTH.
check_estimates() {
  local kind=$1 epoch=$2 truth=$3 i line worst=0
  for i in $(live); do
    line=$(grep "^$kind " "$dir/out$i" | grep "^$kind $epoch " | tail -n 1)
    [ -n "$line" ] || fail "node $i printed no $kind line in epoch $epoch (last: $(grep "^$kind " "$dir/out$i" | tail -n 1))"
    worst=$(echo "$line" | awk -v t="$truth" -v w="$worst" '{ e = ($3 - t) / t; if (e < 0) e = -e; print (e > w ? e : w) }')
  done
  awk -v w="$worst" 'BEGIN { exit !(w <= 1e-6) }' || fail "$kind estimates in epoch $epoch: worst relative error $worst > 1e-6 (truth $truth)"
  echo "$worst"
}

# 1. Start and join.
start 0
wait_for 20 listening 0 || fail "the contact did not start"
addr[0]=$(grep '^LISTEN ' "$dir/out0" | cut -d' ' -f2)
for ((i = 1; i < n; i++)); do start "$i"; done
wait_for 30 all listening || fail "not every node started"
for ((i = 1; i < n; i++)); do addr[$i]=$(grep '^LISTEN ' "$dir/out$i" | cut -d' ' -f2); done
wait_for 30 all joined || fail "not every node joined"
wait_for 30 overlay_ok || fail "the overlay of $n nodes did not become connected"
echo "ok $n nodes joined through ${addr[0]}, overlay connected ($(elapsed))"

# 2. Broadcast 1 and Push-Sum epoch 1 over all N.
kill -USR1 "${pids[1]}"
kill -USR2 "${pids[1]}"
wait_for 30 all has_delivered "bcast-1@${addr[1]}" || fail "broadcast 1 did not reach every node"
echo "ok broadcast 1 delivered by all $n nodes ($(elapsed))"
wait_for 40 all has_converged 1 || fail "Push-Sum epoch 1 did not converge at every node"
truth=$(true_average)
worst=$(check_estimates CONVERGED 1 "$truth") || exit 1
echo "ok Push-Sum epoch 1: every node's average within $worst of $truth ($(elapsed))"

# 2b. Strangers: a process holding another key, and one in plaintext, try to
# join through node 1 and broadcast. Neither joins, nobody lists or hears
# them, and the overlay is as it was.
new_key_file "$dir/other.keys"
strangers=("$n" "$((n + 1))")
for k in "${strangers[@]}"; do
  t=plaintext
  ((k == n)) && t="keyring:$dir/other.keys"
  "$bin" --listen 127.0.0.1:0 --value 1000000 --round 50ms --contact "${addr[1]}" --transport "$t" >"$dir/out$k" 2>"$dir/err$k" &
  pids[$k]=$!
done
wait_for 20 listening "$n" && wait_for 20 listening "$((n + 1))" || fail "the strangers did not start"
sleep 2
for k in "${strangers[@]}"; do kill -USR1 "${pids[$k]}"; done
sleep 2
for k in "${strangers[@]}"; do
  a=$(grep '^LISTEN ' "$dir/out$k" | cut -d' ' -f2)
  joined "$k" && fail "a stranger ($a) joined the overlay"
  for i in $(live); do
    grep -qF "bcast-1@$a" "$dir/out$i" && fail "node $i delivered a stranger's broadcast"
    grep '^VIEW' "$dir/out$i" | grep -qwF "$a" && fail "node $i listed a stranger ($a) in its view"
  done
  kill -9 "${pids[$k]}" 2>/dev/null
  wait "${pids[$k]}" 2>/dev/null
done
overlay_ok || fail "the overlay changed while strangers knocked"
echo "ok a stranger with another key and one in plaintext were refused, nothing changed ($(elapsed))"

# 3. Kill a third, the contact among them.
for ((i = 0; i < n; i += 3)); do
  kill -9 "${pids[$i]}" 2>/dev/null
  wait "${pids[$i]}" 2>/dev/null
  dead+=("$i")
done
kill -STOP "${pids[4]}"
echo "killed ${#dead[@]} of $n nodes (${dead[*]}), froze node 4: $(( n - ${#dead[@]} - 1 )) live ($(elapsed))"
dead+=(4)
wait_for 40 overlay_ok || fail "the survivors' views did not drop the dead and reconnect"
echo "ok survivors' active views hold no dead node and connect all survivors ($(elapsed))"

# 4. Broadcast 2 and Push-Sum epoch 2 among the survivors.
kill -USR1 "${pids[2]}"
kill -USR2 "${pids[2]}"
wait_for 30 all has_delivered "bcast-1@${addr[2]}" || fail "broadcast 2 did not reach every survivor"
echo "ok broadcast 2 delivered by all $(live | wc -l) survivors ($(elapsed))"
wait_for 40 all has_converged 2 || fail "Push-Sum epoch 2 did not converge at every survivor"
truth=$(true_average)
worst=$(check_estimates CONVERGED 2 "$truth") || exit 1
echo "ok Push-Sum epoch 2: every survivor's average within $worst of $truth ($(elapsed))"

# 5. Stop: final estimates, exit status, exactly two deliveries each.
for i in $(live); do kill -TERM "${pids[$i]}" 2>/dev/null; done
exited() { ! kill -0 "${pids[$1]}" 2>/dev/null; }
wait_for 20 all exited || fail "not every survivor exited within 20 s of SIGTERM"
for i in $(live); do
  wait "${pids[$i]}"
  status=$?
  [ "$status" -eq 0 ] || fail "node $i exited with status $status"
done
worst=$(check_estimates FINAL 2 "$truth") || exit 1
for i in $(live); do
  count=$(grep -c '^DELIVER ' "$dir/out$i")
  [ "$count" -eq 2 ] || fail "node $i delivered $count broadcasts, want exactly 2"
done
for i in $(live); do grep '^STATS ' "$dir/out$i"; done | tr ' =' '\n ' | awk 'NF == 2 { s[$1] += $2 }
  END { printf "survivors in all: dead neighbours dropped on transport errors %d, on keep-alive silence %d; repair requests %d; Plumtree grafts %d\n", s["unreachable"], s["silent"], s["neighbor_requests"], s["grafts"] }'
echo "ok final estimates within $worst; every survivor delivered each broadcast once ($(elapsed))"
