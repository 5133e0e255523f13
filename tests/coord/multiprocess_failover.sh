#!/usr/bin/env bash
# The coordination service over TCP, killed under load and checked from outside.
#
#   1. R coord_replica processes (3 or 5) on loopback, data in directories (file disk);
#   2. C coord_client processes contend for one mutex L and one semaphore S of
#      K permits, each printing every acknowledged grant and release with its
#      fencing token and times;
#   3. once a quarter of the grants are done, the leader is killed with SIGKILL;
#      the clients keep going; the killed replica is restarted on its directory;
#   4. every client ends by taking a lock of its own (held-<id>) and keeping it;
#      a probe client then takes a lock P and asks the leader who holds L, S and each
#      held-<id>.
# Checked from outside, from the printed records alone:
#   - no double grant: fencing tokens are unique; per resource, in fencing
#     order, fewer than K earlier grants are still in use when a grant
#     arrives (in use: from the arrival of the grant to the call of its release,
#     or the client's report that its lease ran out);
#   - fencing tokens grow across the failover: the probe's token is above every
#     acknowledged token;
#   - every acknowledged operation is in the replicated state read afterwards:
#     no one holds L or S (every acknowledged release is there), each
#     held-<id> is held by the session and token its client was given, and
#     every replica, the restarted one included, reaches the probe's fencing
#     counter; grants never acknowledged to anyone are at most the errors the
#     clients reported;
#   - each client was granted something after the kill (the service kept going).
# Prints the failover time: from the kill to the new leader, and to the first
# grant acknowledged under it.
#
# usage: multiprocess_failover.sh path/to/coord_replica path/to/coord_client [replicas] [clients] [rounds]
set -uo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, claim_port_block, wait_for
replica_bin=${1:?usage: $0 coord_replica coord_client [replicas] [clients] [rounds]}
client_bin=${2:?usage: $0 coord_replica coord_client [replicas] [clients] [rounds]}
replicas=${3:-3}
clients=${4:-4}
rounds=${5:-40}
permits=2
for b in "$replica_bin" "$client_bin"; do
  [ -x "$b" ] || { echo "FAIL: $b is not an executable (build the coord_replica and coord_client examples)"; exit 1; }
done
dir=$(mktemp -d)
use_keyring "$dir"  # every process authenticated, by one fresh key
pids=()
cpids=()
cleanup() {
  for p in "${pids[@]}" "${cpids[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for ((i = 0; i < replicas; i++)); do
    echo "--- replica $i stdout"; tail -n 20 "$dir/r$i.out" 2>/dev/null
    echo "--- replica $i stderr"; tail -n 20 "$dir/r$i.err" 2>/dev/null
  done
  for ((c = 0; c < clients; c++)); do
    echo "--- client $c"; grep -v '^GRANT\|^RELEASE' "$dir/c$c.out" 2>/dev/null | tail -n 20; tail -n 5 "$dir/c$c.err" 2>/dev/null
  done
  exit 1
}
now_us() { echo $(( ${EPOCHREALTIME/./} )); }

# Free loopback ports: nobody accepts on them now.
free_ports "$replicas"
servers=()
for ((i = 0; i < replicas; i++)); do servers+=(--server "127.0.0.1:${ports[$i]}"); done

start_replica() {  # start replica i, appending to its output
  local i=$1 args=(--listen "127.0.0.1:${ports[$1]}" --data "$dir/data$1" --quiet --disclose-holders)
  for ((j = 0; j < replicas; j++)); do [ "$j" != "$i" ] && args+=(--peer "127.0.0.1:${ports[$j]}"); done
  "$replica_bin" "${args[@]}" >>"$dir/r$i.out" 2>>"$dir/r$i.err" &
  pids[$i]=$!
}
# The replica that leads now: the highest term among those whose last role line is LEADER.
leader() {
  local best=-1 term i
  for ((i = 0; i < replicas; i++)); do
    term=$(grep -E '^(LEADER|FOLLOWER) ' "$dir/r$i.out" 2>/dev/null | tail -n 1 | awk '$1 == "LEADER" { sub("term=", "", $2); print $2 }')
    [ -n "$term" ] && [ "$term" -gt "$best" ] && best=$term && echo_leader=$i
  done
  [ "$best" -ge 0 ]
}
has_leader() { leader; }
grants() { cat "$dir"/c*.out 2>/dev/null | grep -c '^GRANT'; }
enough_grants() { [ "$(grants)" -ge "$1" ]; }
all_done() { [ "$(cat "$dir"/c*.out 2>/dev/null | grep -c '^DONE')" -eq "$clients" ]; }
new_leader_after() {  # a LEADER line at or after time $1 from a replica other than $2
  local i
  for ((i = 0; i < replicas; i++)); do
    [ "$i" = "$2" ] && continue
    awk -v t="$1" '$1 == "LEADER" { sub("at_us=", "", $3); if ($3 + 0 >= t) { print $3; exit 0 } }' "$dir/r$i.out"
  done | sort -n | head -n 1 | grep -q .
}

listening() {  # replica $1 has printed LISTEN $2 times (its signal handlers are set up: SIGUSR1 is safe)
  [ "$(grep -c '^LISTEN' "$dir/r$1.out" 2>/dev/null)" -ge "$2" ]
}
for ((i = 0; i < replicas; i++)); do start_replica "$i"; done
for ((i = 0; i < replicas; i++)); do wait_for 20 listening "$i" 1 || fail "replica $i did not start"; done
wait_for 20 has_leader || fail "no leader elected within 20 s"

for ((c = 0; c < clients; c++)); do
  "$client_bin" "${servers[@]}" --id "c$c" --ops "$rounds" --lock L --sem S --permits "$permits" --hold-ms 2 \
    --hold-final --ttl-ms 6000 --request-timeout-ms 300 >"$dir/c$c.out" 2>"$dir/c$c.err" &
  cpids[$c]=$!
done
total=$((clients * rounds * 2))
wait_for 40 enough_grants $((total / 4)) || fail "the clients did not reach $((total / 4)) grants within 40 s"

leader || fail "no leader to kill"
victim=$echo_leader
t_kill=$(now_us)
kill -9 "${pids[$victim]}"
wait "${pids[$victim]}" 2>/dev/null
echo "killed the leader, replica $victim, after $(grants) of $total grants"
wait_for 20 new_leader_after "$t_kill" "$victim" || fail "no new leader within 20 s of the kill"
start_replica "$victim"
wait_for 20 listening "$victim" 2 || fail "replica $victim did not restart"

wait_for 60 all_done || fail "the clients did not finish within 60 s"

queries=(--query L --query S)
for ((c = 0; c < clients; c++)); do queries+=(--query "held-c$c"); done
"$client_bin" "${servers[@]}" --id probe --probe P "${queries[@]}" --give-up-ms 20000 >"$dir/probe.out" 2>"$dir/probe.err" ||
  fail "the probe failed: $(cat "$dir/probe.err")"
probe_token=$(awk '$1 == "PROBE" { sub("token=", "", $3); print $3 }' "$dir/probe.out")
[ -n "$probe_token" ] || fail "the probe printed no token"

# Every replica, the restarted one included, applies through the probe's grant.
states_agree() {
  local i
  for ((i = 0; i < replicas; i++)); do kill -USR1 "${pids[$i]}" 2>/dev/null; done
  sleep 0.2
  for ((i = 0; i < replicas; i++)); do
    grep '^STATE' "$dir/r$i.out" | tail -n 1 | grep -q " fencing=$probe_token " || return 1
  done
}
wait_for 20 states_agree || fail "not every replica reached fencing counter $probe_token"

for p in "${cpids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for ((c = 0; c < clients; c++)); do
  wait "${cpids[$c]}"
  status=$?
  [ $status -eq 0 ] || fail "client c$c exited with status $status after SIGTERM"
done
cpids=()
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for ((i = 0; i < replicas; i++)); do
  wait "${pids[$i]}"
  status=$?
  [ $status -eq 0 ] || fail "replica $i exited with status $status after SIGTERM"
done
pids=()

# ---- the checks, from the records alone ----
cat "$dir"/c*.out >"$dir/all"
# One line per grant: name token start end permits client (end: release called, lease lost, or never).
awk '
  function kv(   i, a) { delete f; for (i = 2; i <= NF; i++) { split($i, a, "="); f[a[1]] = a[2] } }
  $1 == "GRANT" { kv(); if (f["token"] in name) { print "DUPLICATE " f["token"]; next }
                  name[f["token"]] = f["name"]; start[f["token"]] = f["ack_us"]; k[f["token"]] = f["permits"]; who[f["token"]] = f["client"] }
  $1 == "HOLD"  { kv(); if (f["token"] in name) { print "DUPLICATE " f["token"]; next }
                  name[f["token"]] = f["name"]; start[f["token"]] = f["at_us"]; k[f["token"]] = 1; who[f["token"]] = f["client"] }
  $1 == "RELEASE" { kv(); if (!(f["token"] in end) || f["sent_us"] < end[f["token"]]) end[f["token"]] = f["sent_us"] }
  $1 == "LOST"    { kv(); if (!(f["token"] in end) || f["at_us"] < end[f["token"]]) end[f["token"]] = f["at_us"] }
  END { for (t in name) printf "%s %s %s %s %s %s\n", name[t], t, start[t], (t in end) ? end[t] : "inf", k[t], who[t] }
' "$dir/all" >"$dir/grants"
dups=$(grep -c '^DUPLICATE' "$dir/grants")
[ "$dups" -eq 0 ] || fail "$dups fencing tokens were acknowledged twice: $(grep '^DUPLICATE' "$dir/grants" | head -n 3)"
# Per resource, in fencing order: the grants still in use when this one arrived.
overlaps=$(sort -k1,1 -k2,2n "$dir/grants" | awk '
  $1 != res { res = $1; n = 0 }
  { busy = 0
    for (i = 0; i < n; i++) if (ends[i] == "inf" || ends[i] + 0 > $3 + 0) busy++
    if (busy >= $5 + 0) printf "%s token %s (client %s) granted at %s while %d earlier grant(s) were in use\n", $1, $2, $6, $3, busy
    ends[n++] = $4 }')
[ -z "$overlaps" ] || fail "double grant: $(echo "$overlaps" | head -n 3)"
acked=$(wc -l <"$dir/grants")
max_token=$(sort -k2,2n "$dir/grants" | tail -n 1 | cut -d' ' -f2)
[ "$probe_token" -gt "$max_token" ] || fail "the probe got token $probe_token, not above the acknowledged $max_token"

# The replicated state, read after the run.
holder() { awk -v n="$1" '$1 == "HOLDER" && $2 == "name=" n { print (NF > 3 ? $3 " " $4 : $3) }' "$dir/probe.out"; }
[ "$(holder L)" = "none" ] || fail "L is held after every release was acknowledged: $(holder L)"
[ "$(holder S)" = "none" ] || fail "S is held after every release was acknowledged: $(holder S)"
for ((c = 0; c < clients; c++)); do
  want=$(awk '$1 == "HOLD" { print $3, $5 }' "$dir/c$c.out")
  [ -n "$want" ] || fail "client c$c printed no HOLD"
  [ "$(holder "held-c$c")" = "$want" ] || fail "held-c$c: the replicas say '$(holder "held-c$c")', the client was given '$want'"
done
errors=$(grep -c '^ERROR' "$dir/all")
unacked=$((probe_token - 1 - acked))
[ "$unacked" -le "$errors" ] ||
  fail "$unacked grants were made but never acknowledged, with only $errors client errors to explain them"
[ "$unacked" -ge 0 ] || fail "more tokens acknowledged ($acked) than the counter issued ($((probe_token - 1)))"

# The service kept going: every client was granted something after the kill.
for ((c = 0; c < clients; c++)); do
  after=$(awk -v t="$t_kill" '$1 == "GRANT" { for (i = 2; i <= NF; i++) if ($i ~ /^ack_us=/) { sub("ack_us=", "", $i); if ($i + 0 > t) n++ } } END { print n + 0 }' "$dir/c$c.out")
  [ "$after" -gt 0 ] || fail "client c$c was granted nothing after the kill"
done

# Failover: kill -> new leader; kill -> first grant acknowledged under the new leader.
t_leader=$(for ((i = 0; i < replicas; i++)); do
  [ "$i" = "$victim" ] && continue
  awk -v t="$t_kill" '$1 == "LEADER" { sub("at_us=", "", $3); if ($3 + 0 >= t) print $3 }' "$dir/r$i.out"
done | sort -n | head -n 1)
t_grant=$(awk -v t="$t_leader" '$1 == "GRANT" { for (i = 2; i <= NF; i++) if ($i ~ /^ack_us=/) { sub("ack_us=", "", $i); if ($i + 0 >= t) print $i } }' "$dir/all" | sort -n | head -n 1)
[ -n "$t_grant" ] || fail "no grant acknowledged under the new leader"
lost=$(grep -c '^LOST' "$dir/all")
echo "ok: $replicas replicas, $clients clients, $acked grants acknowledged (tokens unique, no overlap on L or S with $permits permits),"
echo "    probe token $probe_token above all, replicated state matches, $errors client errors, $lost leases lost, $unacked unacknowledged grants"
echo "failover: new leader $(( (t_leader - t_kill) / 1000 )) ms after the kill, first grant under it $(( (t_grant - t_kill) / 1000 )) ms after the kill"
echo "PASS"
