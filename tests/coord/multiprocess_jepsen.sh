#!/usr/bin/env bash
# A Jepsen-style test of the coordination service: real processes, a nemesis,
# and the history checked from outside.
#
#   1. the checker is shown able to fail: hand-made histories
#      (tests/coord/jepsen/*.history) with a stale read, with a read that
#      only an operation of unknown outcome invoked too late could explain,
#      and with a read of a write that failed must be rejected; one that is
#      linearizable only because unknown operations may or may not have taken
#      effect must be accepted;
#   2. R coord_replica processes (3 or 5) on loopback, each with its data
#      directory (file disk), on the keyring transport;
#   3. coord_jepsen_workload: K clients doing get, put, compare-and-set and
#      remove on a few keys for T seconds, recording every operation with its
#      CLOCK_MONOTONIC invocation and completion times and result, or
#      "unknown" when the outcome is indeterminate;
#   4. meanwhile a nemesis, one fault every ~2 s until 5 s before the end, in
#      turn: SIGKILL the leader and restart it from its directory; SIGSTOP
#      the leader for 1.5 s (5 to 10 election timeouts: the GC pause that
#      breaks reads served on a leader's lease, since the paused leader
#      still believes it leads when it wakes) then SIGCONT; SIGKILL a random
#      replica and restart it; SIGSTOP a follower;
#   5. coord_jepsen_check: the history, split by key, must be linearizable,
#      with at least MIN_OK operations completed ok, and some in the last 3 s
#      (the cluster recovered after the last fault: a dead cluster cannot
#      pass); every replica must still be running and stop cleanly.
#
# KEEP_DIR=1 keeps the temporary directory (the history, the replicas' output);
# CALM=S sets the calm after each fault (1 s; less is harsher).
#
# usage: multiprocess_jepsen.sh coord_replica coord_jepsen_workload coord_jepsen_check [replicas] [clients] [seconds]
set -uo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, use_keyring, wait_for
here=$(cd "$(dirname "$0")" && pwd)
replica_bin=${1:?usage: $0 coord_replica coord_jepsen_workload coord_jepsen_check [replicas] [clients] [seconds]}
workload_bin=${2:?usage: $0 coord_replica coord_jepsen_workload coord_jepsen_check}
check_bin=${3:?usage: $0 coord_replica coord_jepsen_workload coord_jepsen_check}
replicas=${4:-3}
clients=${5:-6}
seconds=${6:-20}
min_ok=${MIN_OK:-500}
for b in "$replica_bin" "$workload_bin" "$check_bin"; do
  [ -x "$b" ] || { echo "FAIL: $b is not an executable"; exit 1; }
done
dir=$(mktemp -d)
pids=()
stopped=()
wpid=""
cleanup() {
  for p in "${stopped[@]}"; do kill -CONT "$p" 2>/dev/null; done
  for p in "${pids[@]}" $wpid; do kill -9 "$p" 2>/dev/null; done
  if [ -n "${KEEP_DIR:-}" ]; then echo "kept $dir (history, replicas' output)"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for ((i = 0; i < replicas; i++)); do
    echo "--- replica $i stdout"; tail -n 10 "$dir/r$i.out" 2>/dev/null
    echo "--- replica $i stderr"; tail -n 10 "$dir/r$i.err" 2>/dev/null
  done
  echo "--- workload"; tail -n 10 "$dir/workload.out" "$dir/workload.err" 2>/dev/null
  echo "--- nemesis (seconds since boot when each fault began)"; cat "$dir/nemesis.log" 2>/dev/null
  exit 1
}

# ---- 1. the checker can fail ----
for bad in stale_read unknown_too_late failed_write_read; do
  "$check_bin" "$here/jepsen/$bad.history" >"$dir/bad.out" 2>&1
  status=$?
  [ $status -eq 1 ] && grep -q '^NOT linearizable' "$dir/bad.out" ||
    fail "the checker did not reject $bad.history (exit $status): $(cat "$dir/bad.out")"
done
"$check_bin" "$here/jepsen/unknown_write.history" >"$dir/good.out" 2>&1 ||
  fail "the checker rejected unknown_write.history: $(cat "$dir/good.out")"
echo "checker: rejects stale_read, unknown_too_late and failed_write_read; accepts unknown_write"

# ---- 2. the cluster ----
use_keyring "$dir"  # every process authenticated, by one fresh key
free_ports "$replicas"
servers=()
for ((i = 0; i < replicas; i++)); do servers+=(--server "127.0.0.1:${ports[$i]}"); done
start_replica() {
  local i=$1 args=(--listen "127.0.0.1:${ports[$1]}" --data "$dir/data$1" --quiet)
  for ((j = 0; j < replicas; j++)); do [ "$j" != "$i" ] && args+=(--peer "127.0.0.1:${ports[$j]}"); done
  "$replica_bin" "${args[@]}" >>"$dir/r$i.out" 2>>"$dir/r$i.err" &
  pids[$i]=$!
}
listening() { [ "$(grep -c '^LISTEN' "$dir/r$1.out" 2>/dev/null)" -ge "$2" ]; }
# The replica that leads now: the highest term among those whose last role
# line is LEADER (a replica killed or paused as leader keeps its old term).
leader() {
  local best=-1 term i
  for ((i = 0; i < replicas; i++)); do
    term=$(grep -E '^(LEADER|FOLLOWER) ' "$dir/r$i.out" 2>/dev/null | tail -n 1 | awk '$1 == "LEADER" { sub("term=", "", $2); print $2 }')
    [ -n "$term" ] && [ "$term" -gt "$best" ] && best=$term && the_leader=$i
  done
  leader_term=$best
  [ "$best" -ge 0 ]
}
newer_leader() { leader && [ "$leader_term" -gt "$1" ]; }  # a leader elected in a term after $1
for ((i = 0; i < replicas; i++)); do start_replica "$i"; done
for ((i = 0; i < replicas; i++)); do wait_for 20 listening "$i" 1 || fail "replica $i did not start"; done
wait_for 20 leader || fail "no leader elected within 20 s"

# ---- 3. the workload ----
"$workload_bin" "${servers[@]}" --out "$dir/history" --clients "$clients" --seconds "$seconds" --keys 3 \
  --request-timeout-ms 200 --give-up-ms 2000 --patient-timeout-ms 2500 >"$dir/workload.out" 2>"$dir/workload.err" &
wpid=$!

# ---- 4. the nemesis ----
restarts=()
for ((i = 0; i < replicas; i++)); do restarts[$i]=1; done
kill_and_restart() {  # SIGKILL replica $1, restart it on its directory after $2 s
  kill -9 "${pids[$1]}"
  wait "${pids[$1]}" 2>/dev/null
  sleep "$2"
  start_replica "$1"
  restarts[$1]=$((restarts[$1] + 1))
  wait_for 10 listening "$1" "${restarts[$1]}" || fail "replica $1 did not restart"
}
pause() {  # SIGSTOP replica $1 for $2 s
  kill -STOP "${pids[$1]}"
  stopped=("${pids[$1]}")
  sleep "$2"
  kill -CONT "${pids[$1]}"
  stopped=()
}
log=()
nemesis_end=$((SECONDS + seconds - 5))
round=0
sleep 1.5
while [ $SECONDS -lt $nemesis_end ]; do
  leader || fail "no leader during the run"
  term=$leader_term
  began=$(cut -d' ' -f1 /proc/uptime)
  case $((round % 4)) in
    0) log+=("kill-leader:r$the_leader"); kill_and_restart "$the_leader" 0.5 ;;
    1) log+=("pause-leader:r$the_leader"); pause "$the_leader" 1.5 ;;
    2) v=$((RANDOM % replicas)); log+=("kill:r$v"); kill_and_restart "$v" 1 ;;
    3) v=$(((the_leader + 1 + RANDOM % (replicas - 1)) % replicas)); log+=("pause-follower:r$v"); pause "$v" 1 ;;
  esac
  round=$((round + 1))
  # when it began, in seconds since boot (CLOCK_BOOTTIME: the history's
  # CLOCK_MONOTONIC on a machine never suspended), printed on failure
  echo "$began ${log[-1]}" >>"$dir/nemesis.log"
  # after a fault of the leader, a new one; then a little calm before the next fault
  if [[ ${log[-1]} == *-leader:* ]]; then
    wait_for 10 newer_leader "$term" || fail "no new leader within 10 s of ${log[-1]}"
  fi
  sleep "${CALM:-1}"
done
echo "nemesis: ${#log[@]} faults: ${log[*]}"

wait "$wpid"
status=$?
wpid=""
[ $status -eq 0 ] || fail "the workload exited with status $status: $(tail -n 5 "$dir/workload.err")"
cat "$dir/workload.out"

# ---- 5. the checks ----
for ((i = 0; i < replicas; i++)); do
  kill -0 "${pids[$i]}" 2>/dev/null || fail "replica $i is not running at the end"
done
"$check_bin" "$dir/history" --min-ok "$min_ok" --min-ok-in-last 3 20 >"$dir/check.out" 2>&1
status=$?
cat "$dir/check.out" | head -n 30
[ $status -eq 0 ] || fail "the history failed the check (exit $status)"
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for ((i = 0; i < replicas; i++)); do
  wait "${pids[$i]}"
  status=$?
  [ $status -eq 0 ] || fail "replica $i exited with status $status after SIGTERM"
done
pids=()
echo "PASS"
