#!/usr/bin/env bash
# The flash crowd over real TCP: one delegation_origin (capacity C units of
# work at once, S shards; a stock of seats; the overlay's entry point, which
# every client node joins through) and PROCS delegation_clients processes of
# PER nodes each, all of them arriving within one second. In
# the middle, the process hosting the coordinator of shard work#0 is killed
# with SIGKILL (its PER nodes die at once, coordinators and clients).
# Checked from outside, from the origin's record (delegation_origin --audit):
# the load never exceeded C; every token honoured was valid (signed by a
# coordinator the origin had delegated to, presented by its holder, unexpired
# for the whole unit of work); epochs never overlapped; every seat a client
# was told it has exists at the origin exactly once. And, for liveness: every
# shard served work, and the killed coordinator's shard was delegated anew
# and served work again before the end.
#
# OVERLAY_GROUPS=3: every shard is coordinated by a group of the 3 nodes
# closest to its key, formed from the overlay (delegation::group_host). The
# process killed hosts work#0's founder; if a majority of its group lives
# on, the shard must serve on in the same epoch, with no token lost;
# otherwise it is delegated anew, as above.
#
#   multiprocess_surge.sh ORIGIN_BIN CLIENTS_BIN [PROCS] [PER]
set -euo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, claim_port_block
origin_bin=$1
clients_bin=$2
procs=${3:-4}
per=${4:-50}
overlay_groups=${OVERLAY_GROUPS:-0}
group_option=()
((overlay_groups > 0)) && group_option=(--overlay-groups "$overlay_groups")
capacity=20
run_for_s=12

scratch  # $dir; every process in $pids is killed on exit (tests/multiprocess.sh)
use_keyring "$dir"  # every process authenticated, by one fresh key
fail() {
  echo "FAIL: $*"
  echo "--- origin"; tail -n 20 "$dir/origin.out" "$dir/origin.err" || true
  for ((p = 0; p < procs; p++)); do echo "--- clients $p"; tail -n 5 "$dir/c$p.out" "$dir/c$p.err" || true; done
  exit 1
}
now_ms() { date +%s%3N; }
ulimit -n 16384 2>/dev/null || true  # PER nodes with tens of connections each

claim_port_block
base=$port_block  # the origin; the client nodes' ports follow
"$origin_bin" --listen 127.0.0.1:$base --record "$dir/record" --capacity $capacity --shards 4 --work 20ms \
  --seats 150 --seat-shards 2 --validity 3s --drift 50ms --entry >"$dir/origin.out" 2>"$dir/origin.err" &
origin_pid=$!
pids+=("$origin_pid")
for _ in $(seq 100); do grep -q '^KEY ' "$dir/origin.out" && break; sleep 0.1; done
key=$(awk '/^KEY /{print $2}' "$dir/origin.out")
[[ -n $key ]] || fail "the origin did not start"

client_pids=()
for ((p = 0; p < procs; p++)); do
  "$clients_bin" --origin 127.0.0.1:$base --origin-key "$key" --listen 127.0.0.1:$((base + 1 + p * per)) --nodes "$per" \
    --bootstrap 127.0.0.1:$base --spread 1s --run-for ${run_for_s}s --shards 4 \
    --seat-shards 2 --seed $((p + 1)) "${group_option[@]}" >"$dir/c$p.out" 2>"$dir/c$p.err" &
  client_pids+=($!)
  pids+=($!)
  ((p == 0)) && sleep 0.5  # a first process in the overlay the origin founded, then the rest
done
# Every process READY (its nodes joined the overlay), then the crowd: all at once.
for _ in $(seq 600); do
  (($(cat "$dir"/c*.out | grep -c '^READY' || true) == procs)) && break
  sleep 0.1
done
grep -h '^READY' "$dir"/c*.out | tr '\n' ' ' || true  # none READY: say so below, not exit here (pipefail)
echo
(($(cat "$dir"/c*.out | grep -c '^READY' || true) == procs)) || fail "the overlay did not form within 60 s"
kill -USR1 "${client_pids[@]}"
surge_at=$(($(now_ms) + 200))
echo "surge: $((procs * per)) client nodes in $procs processes arrive within 1 s; capacity $capacity"

# Mid-surge: SIGKILL the process that hosts work#0's coordinator.
while (($(now_ms) < surge_at + 4000)); do sleep 0.2; done
coordinator=$(awk '$1 == "COORDINATOR" && $2 == "work#0" {a = $4} END {print a}' "$dir/origin.out")
[[ -n $coordinator ]] || fail "no token of work#0 was presented in the first 4 s"
port=${coordinator##*:}
victim=$(((port - base - 1) / per))
((victim >= 0 && victim < procs)) || fail "work#0's coordinator $coordinator is not a client node"
# A group's members in the victim process die with it: count those that live on.
members=$(awk '$1 == "COORDINATOR" && $2 == "work#0" {$1 = $2 = $3 = ""; a = $0} END {print a}' "$dir/origin.out")
survivors=0
for m in $members; do
  mp=${m##*:}
  (((mp - base - 1) / per != victim)) && survivors=$((survivors + 1))
done
n_members=$(wc -w <<<"$members")
killed_at_us=$(($(now_ms) * 1000))
kill -9 "${client_pids[$victim]}"
echo "killed clients process $victim (pid ${client_pids[$victim]}, $per nodes) hosting work#0's coordinator $coordinator ($survivors of $n_members members live on)"

# The run, then the stragglers' last units and releases.
while (($(now_ms) < surge_at + run_for_s * 1000 + 3000)); do sleep 0.2; done
for ((p = 0; p < procs; p++)); do
  ((p == victim)) && continue
  for _ in $(seq 100); do grep -q '^DONE' "$dir/c$p.out" && break; sleep 0.1; done
done
kill -TERM "$origin_pid"
wait "$origin_pid" || true
for ((p = 0; p < procs; p++)); do
  ((p == victim)) && continue
  kill -TERM "${client_pids[$p]}" 2>/dev/null || true
done
wait 2>/dev/null || true

grep -h '^STATS\|^REFUSED' "$dir/origin.out" || true
grep -h '^DONE' "$dir"/c*.out || true
cat "$dir"/c*.out | grep '^SEAT' >"$dir/claims" || true
audit=$("$origin_bin" --audit "$dir/record" --claims "$dir/claims") || fail "$audit"
echo "$audit"

# Liveness: every shard served; work#0 was delegated anew and served after the kill.
for s in 0 1 2 3; do
  grep -q "^EPOCH work#$s " <<<"$audit" || fail "shard work#$s never served work"
done
claims=$(wc -l <"$dir/claims")
((claims > 0)) || fail "no client was confirmed a seat"
if ((overlay_groups > 0 && 2 * survivors > n_members)); then
  # A majority of work#0's group lived on: the same epoch serves on, and no
  # surviving client lost a token it held.
  new_epochs=$(awk -v k="$killed_at_us" '$1 == "EPOCH" && $2 == "work#0" && $4 > k {n++} END {print n + 0}' <<<"$audit")
  ((new_epochs == 0)) || fail "work#0's group kept a majority but the shard was delegated anew"
  last_start=$(awk '$1 == "GAP" && $2 == "work#0" {print $5}' <<<"$audit")
  ((last_start > killed_at_us)) || fail "work#0 served no work after the kill"
  lost=$(grep -h '^DONE' "$dir"/c*.out | sed 's/.*lost=\([0-9]*\).*/\1/' | awk '{n += $1} END {print n + 0}')
  ((lost == 0)) || fail "$lost tokens held by surviving clients were lost"
  echo "PASS: audit ok, work#0's group of the overlay served on in the same epoch after the kill, no token lost, $claims seats confirmed and found at the origin"
  exit 0
fi
after_kill=$(awk -v k="$killed_at_us" '$1 == "EPOCH" && $2 == "work#0" && $4 > k {n++} END {print n + 0}' <<<"$audit")
((after_kill > 0)) || fail "work#0 was not delegated anew after its coordinator was killed"
outage_ms=$(awk -v k="$killed_at_us" '$1 == "EPOCH" && $2 == "work#0" && $4 > k {print int(($4 - k) / 1000); exit}' <<<"$audit")
echo "work#0 served again under a new epoch ${outage_ms} ms after the kill (certificates of 3 s, drift bound 50 ms)"
echo "PASS: audit ok, work#0 re-delegated after the kill, $claims seats confirmed and found at the origin"
