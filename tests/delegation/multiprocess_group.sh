#!/usr/bin/env bash
# Multi-delegation over real TCP: one delegation_origin (C units of work at
# once, S shards; a stock of seats; the overlay's entry point, which the
# client nodes join through), a group of 3 delegation_group processes
# that coordinates every shard of "work" and of "seats" by quorum (Raft on
# disk: seats are logged, batched and confirmed before a receipt), and PROCS
# delegation_clients processes of PER nodes each, arriving within one second.
# In the middle, the group's leader is killed with SIGKILL.
# Checked from outside, from the origin's record (delegation_origin --audit):
# the load never exceeded C; every token honoured was valid (signed by a
# member of the group the origin had delegated to, presented by its holder,
# unexpired for the whole unit); every confirmed seat exists exactly once.
# And what the group is for: no shard of "work" needed a new epoch (the next
# leader renewed the same delegation), no client lost a token it held, and
# every shard served work after the kill; every seat was sold, each to a
# client that was told so. Prints each shard's longest pause.
#
# With QUORUM_SIGNED=1 the group has 4 members and the origin asks for
# work tokens signed by 3 of them (dcp/delegation/token.hpp); the audit then
# also checks that every work token honoured carries those signatures.
#
#   [QUORUM_SIGNED=1] multiprocess_group.sh ORIGIN_BIN GROUP_BIN CLIENTS_BIN [PROCS] [PER]
set -euo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, claim_port_block
origin_bin=$1
group_bin=$2
clients_bin=$3
procs=${4:-4}
per=${5:-50}
capacity=20
run_for_s=12
quorum_signed=${QUORUM_SIGNED:-0}
nmembers=3
work_tokens=single
if ((quorum_signed)); then
  nmembers=4
  work_tokens=quorum
fi

scratch  # $dir; every process in $pids is killed on exit (tests/multiprocess.sh)
use_keyring "$dir"  # every process authenticated, by one fresh key
fail() {
  echo "FAIL: $*"
  echo "--- origin"; tail -n 20 "$dir/origin.out" "$dir/origin.err" || true
  for ((m = 0; m < nmembers; m++)); do echo "--- member $m"; tail -n 5 "$dir/g$m.out" "$dir/g$m.err" || true; done
  for ((p = 0; p < procs; p++)); do echo "--- clients $p"; tail -n 5 "$dir/c$p.out" "$dir/c$p.err" || true; done
  exit 1
}
now_ms() { date +%s%3N; }
ulimit -n 16384 2>/dev/null || true

claim_port_block
base=$port_block  # the origin; the group's and the client nodes' ports follow
"$origin_bin" --listen 127.0.0.1:$base --record "$dir/record" --capacity $capacity --shards 4 --work 20ms \
  --seats 150 --seat-shards 2 --validity 3s --drift 50ms --work-tokens $work_tokens --entry >"$dir/origin.out" 2>"$dir/origin.err" &
origin_pid=$!
pids+=("$origin_pid")
for _ in $(seq 100); do grep -q '^KEY ' "$dir/origin.out" && break; sleep 0.1; done
key=$(awk '/^KEY /{print $2}' "$dir/origin.out")
[[ -n $key ]] || fail "the origin did not start"

members=127.0.0.1:$((base + 1))
for ((m = 1; m < nmembers; m++)); do members+=,127.0.0.1:$((base + 1 + m)); done
group_pids=()
for ((m = 0; m < nmembers; m++)); do
  mkdir -p "$dir/data$m"
  "$group_bin" --listen 127.0.0.1:$((base + 1 + m)) --members "$members" --origin 127.0.0.1:$base --origin-key "$key" \
    --data "$dir/data$m" --shards 4 --stock seats:2 --token-ttl 2s --drift 50ms >"$dir/g$m.out" 2>"$dir/g$m.err" &
  group_pids+=($!)
  pids+=($!)
done

cbase=$((base + 10))
client_pids=()
for ((p = 0; p < procs; p++)); do
  "$clients_bin" --origin 127.0.0.1:$base --origin-key "$key" --listen 127.0.0.1:$((cbase + p * per)) --nodes "$per" \
    --bootstrap 127.0.0.1:$base --spread 1s --run-for ${run_for_s}s --shards 4 \
    --seat-shards 2 --seed $((p + 1)) --group "$members" --group-resources work,seats >"$dir/c$p.out" 2>"$dir/c$p.err" &
  client_pids+=($!)
  pids+=($!)
  ((p == 0)) && sleep 0.5
done
for _ in $(seq 600); do
  (($(cat "$dir"/c*.out | grep -c '^READY' || true) == procs)) && grep -q '^LEADER' "$dir"/g*.out && break
  sleep 0.1
done
grep -h '^READY' "$dir"/c*.out | tr '\n' ' ' || true  # none READY: say so below, not exit here (pipefail)
echo
(($(cat "$dir"/c*.out | grep -c '^READY' || true) == procs)) || fail "the overlay did not form within 60 s"
grep -q '^LEADER' "$dir"/g*.out || fail "the group elected no leader"
kill -USR1 "${client_pids[@]}"
surge_at=$(($(now_ms) + 200))
echo "surge: $((procs * per)) client nodes in $procs processes arrive within 1 s; capacity $capacity; work coordinated by a group of $nmembers ($work_tokens-signed tokens)"

# Mid-surge: SIGKILL whichever member leads now.
while (($(now_ms) < surge_at + 4000)); do sleep 0.2; done
leader=-1
for ((m = 0; m < nmembers; m++)); do
  [[ $(grep -E '^(LEADER|FOLLOWER)' "$dir/g$m.out" | tail -n 1 | cut -d' ' -f1) == LEADER ]] && leader=$m
done
((leader >= 0)) || fail "no member leads 4 s into the surge"
killed_at_us=$(($(now_ms) * 1000))
kill -9 "${group_pids[$leader]}"
echo "killed the group's leader, member $leader (pid ${group_pids[$leader]})"

while (($(now_ms) < surge_at + run_for_s * 1000 + 3000)); do sleep 0.2; done
for ((p = 0; p < procs; p++)); do
  for _ in $(seq 100); do grep -q '^DONE' "$dir/c$p.out" && break; sleep 0.1; done
done
kill -TERM "$origin_pid"
wait "$origin_pid" || true
for ((p = 0; p < procs; p++)); do kill -TERM "${client_pids[$p]}" 2>/dev/null || true; done
for ((m = 0; m < nmembers; m++)); do ((m == leader)) || kill -TERM "${group_pids[$m]}" 2>/dev/null || true; done
# Every process exits on SIGTERM within 10 s; one that does not is a bug, said as such (not a ctest timeout).
for _ in $(seq 100); do
  alive=0
  for p in "${client_pids[@]}" "${group_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  ((alive)) || break
  sleep 0.1
done
((alive == 0)) || fail "a process did not exit within 10 s of SIGTERM"
wait 2>/dev/null || true

grep -h '^STATS\|^REFUSED' "$dir/origin.out" || true
grep -h '^DONE' "$dir"/c*.out || true
grep -h '^LEADER' "$dir"/g*.out | sort -t= -k3 -n | tr '\n' ' '
echo
cat "$dir"/c*.out | grep '^SEAT' >"$dir/claims" || true
# Pauses count while the crowd still asks (its last 300 ms aside: nodes stop
# asking as they finish), not once it leaves.
busy_until_us=$(((surge_at + run_for_s * 1000 - 300) * 1000))
audit=$("$origin_bin" --audit "$dir/record" --claims "$dir/claims" --busy-until $busy_until_us) || fail "$audit"
echo "$audit"

(($(grep -c '^DONE' "$dir"/c*.out | awk -F: '{s += $2} END {print s}') == procs)) || fail "a clients process did not finish"
lost=$(grep -h '^DONE' "$dir"/c*.out | sed 's/.*lost=\([0-9]*\).*/\1/' | awk '{s += $1} END {print s + 0}')
((lost == 0)) || fail "$lost tokens were lost (expired while held, unrenewed) across the leader's crash"
for s in 0 1 2 3; do
  epochs=$(grep -c "^EPOCH work#$s " <<<"$audit" || true)
  ((epochs == 1)) || fail "work#$s served under $epochs epochs: the group should have kept its one delegation"
  last=$(awk -v s="work#$s" '$1 == "GAP" && $2 == s {print $5}' <<<"$audit")
  ((last > killed_at_us)) || fail "work#$s served no work after the leader was killed"
done
# 200 clients for 150 seats, all asking within the run: every seat sold,
# each to a client that was told so (none lost with the killed leader).
sold=$(sed -n 's/^AUDIT ok .* seats=\([0-9]*\)\/\([0-9]*\) claims=\([0-9]*\).*/\1 \2 \3/p' <<<"$audit")
read -r allocated stock claims <<<"$sold"
((allocated == stock && claims == stock)) || fail "seats: $allocated of $stock allocated, $claims confirmed to clients"
worst=$(awk '$1 == "GAP" && $2 ~ /^work#/ {if ($3 > m) m = $3} END {print int(m / 1000)}' <<<"$audit")
worst_at=$(awk -v k="$killed_at_us" '$1 == "GAP" && $2 ~ /^work#/ {if ($3 > m) {m = $3; at = int(($4 - k) / 1000)}} END {print at}' <<<"$audit")
echo "PASS: audit ok; the leader's crash cost no epoch, no token and no seat ($claims of $stock sold through the group); longest pause of any work shard ${worst} ms (from ${worst_at} ms after the kill)"
