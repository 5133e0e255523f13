#!/usr/bin/env bash
# N heartbeat_node processes run SWIM (--protocol swim) over sealed UDP
# datagrams (--transport udp:keyring:FILE) on loopback; checked from outside
# by parsing each process's stdout (UP / DOWN lines):
#   1. every process reports the N-1 others UP (full membership);
#   2. one is killed with SIGKILL: every survivor reports it DOWN within a
#      bound derived from the SWIM configuration below;
#   3. one survivor is stopped (SIGSTOP) for two protocol periods, less than
#      the shortest suspicion timeout, then resumed (SIGCONT): it refutes any
#      suspicion, and nobody reports it DOWN during the longest suspicion
#      timeout that follows;
#   4. a process holding another key, seeded with every survivor, is never
#      admitted: for 2 s nobody reports it UP and it reports nobody UP;
#   5. no survivor ever reported another survivor DOWN; SIGTERM stops them
#      all with status 0.
# usage: multiprocess_swim_udp.sh path/to/heartbeat_node [N]
set -uo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, claim_port_block, new_key_file
bin=${1:?usage: $0 path/to/heartbeat_node [N]}
n=${2:-6}
[ -x "$bin" ] || { echo "FAIL: $bin is not an executable (build the heartbeat_node target)"; exit 1; }
scratch  # $dir; every process in $pids is killed on exit (tests/multiprocess.sh)

# SWIM's configuration, and the bounds it gives (swim_config, docs/membership.md):
period_ms=200       # --interval: one protocol period P
probe_timeout_ms=100
mult=4              # suspicion min = mult * max(1, log10 N) * P = 800 ms for N <= 10
max_mult=3          # suspicion max = max_mult * min = 2.4 s (one accuser, no confirmation)
((n <= 10)) || { echo "FAIL: the bounds below assume N <= 10 (log10 N <= 1)"; exit 1; }
susp_min_ms=$((mult * period_ms))
susp_max_ms=$((max_mult * susp_min_ms))
# Detection: some member probes the dead one within 2N-1 periods (round-robin,
# SWIM §4.3), its suspicion ends within the max timeout, and the Dead update
# reaches everyone in a few periods (each piggyback sent λ·log N times); plus
# 2 s for a loaded machine (CI runs this under sanitizers).
detect_bound_ms=$(((2 * n - 1) * period_ms + susp_max_ms + 5 * period_ms + 2000))
stop_ms=$((2 * period_ms))  # SIGSTOP for less than the shortest suspicion timeout
((stop_ms < susp_min_ms)) || { echo "FAIL: the pause must be below the suspicion min"; exit 1; }

free_ports $((n + 1))  # the last one for the process holding the wrong key
addr() { echo "127.0.0.1:${ports[$1]}"; }
new_key_file "$dir/cluster.keys"
new_key_file "$dir/other.keys"
fail() {
  echo "FAIL: $*"
  for ((i = 0; i <= n; i++)); do
    echo "--- node $i ($(addr "$i")) stdout"; cat "$dir/out$i" 2>/dev/null
    echo "--- node $i stderr"; tail -n 5 "$dir/err$i" 2>/dev/null
  done
  exit 1
}
start() {  # start node i, seeded with every other node [with transport T instead of the cluster's]
  local i=$1
  local args=(--protocol swim --listen "$(addr "$i")" --interval ${period_ms}ms --timeout ${probe_timeout_ms}ms
                   --suspicion-mult $mult --suspicion-max-mult $max_mult
                   --transport "${2:-udp:keyring:$dir/cluster.keys}")
  for ((j = 0; j < n; j++)); do [ "$j" != "$i" ] && args+=(--peer "$(addr "$j")"); done
  "$bin" "${args[@]}" >>"$dir/out$i" 2>>"$dir/err$i" &
  pids[$i]=$!
}
last_event() {  # last UP/DOWN line node i printed about node j
  grep -E "^(UP|DOWN|LEFT) $(addr "$2")\$" "$dir/out$1" 2>/dev/null | tail -n 1 | cut -d' ' -f1
}
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
all_up() {  # all_up NODES...: each of them last reported each other one UP
  local i j
  for i in "$@"; do for j in "$@"; do
    [ "$i" = "$j" ] && continue
    [ "$(last_event "$i" "$j")" = UP ] || return 1
  done; done
}
all_say() {  # all_say EVENT J NODES...: each of NODES last reported node J as EVENT
  local ev=$1 j=$2 i
  shift 2
  for i in "$@"; do [ "$(last_event "$i" "$j")" = "$ev" ] || return 1; done
}

# Plaintext UDP by name is accepted, and the heartbeat is refused over UDP.
"$bin" --listen "$(addr 0)" --transport udp:plaintext >/dev/null 2>"$dir/usage" && fail "the heartbeat over udp was accepted"
grep -q "protocol swim" "$dir/usage" || fail "the heartbeat over udp was refused without saying why: $(cat "$dir/usage")"

everyone=()
for ((i = 0; i < n; i++)); do start "$i"; everyone+=("$i"); done
t0=$(date +%s%N)
wait_for 10 all_up "${everyone[@]}" || fail "not every node reported the $((n - 1)) others UP"
echo "all $n nodes report full membership after $(ms "$t0") ms"

victim=$((n - 1))
survivors=("${everyone[@]:0:$victim}")
kill -9 "${pids[$victim]}"
wait "${pids[$victim]}" 2>/dev/null
t0=$(date +%s%N)
wait_for $(((detect_bound_ms + 999) / 1000)) all_say DOWN "$victim" "${survivors[@]}" ||
  fail "the survivors did not all report the killed node DOWN within the bound"
took=$(ms "$t0")
((took <= detect_bound_ms)) || fail "detection took $took ms, above the bound of $detect_bound_ms ms"
echo "killed node reported DOWN by all $((n - 1)) survivors after $took ms (bound $detect_bound_ms ms)"

paused=0
kill -STOP "${pids[$paused]}"
sleep "$(printf '0.%03d' "$stop_ms")"
kill -CONT "${pids[$paused]}"
sleep "$(printf '%d.%03d' $(((susp_max_ms + 2 * period_ms) / 1000)) $(((susp_max_ms + 2 * period_ms) % 1000)))"
for i in "${survivors[@]:1}"; do  # never DOWN, even if UP again since (a rejoin after a false death)
  grep -q "^DOWN $(addr "$paused")\$" "$dir/out$i" &&
    fail "node $i declared node $paused dead after a pause of $stop_ms ms (below the suspicion min $susp_min_ms ms)"
done
all_say UP "$paused" "${survivors[@]:1}" || fail "a survivor no longer reports the paused node UP"
all_up "${survivors[@]}" || fail "the paused node lost a member"
echo "node paused for $stop_ms ms was not declared dead (suspicion refuted or never raised)"

stranger=$n
start "$stranger" "udp:keyring:$dir/other.keys"
sleep 2
grep -q '^LISTEN' "$dir/out$stranger" || fail "the process with the other key did not start"
grep -q '^UP' "$dir/out$stranger" && fail "the process with the other key admitted someone"
for i in "${survivors[@]}"; do
  [ -z "$(last_event "$i" "$stranger")" ] || fail "node $i admitted the process holding another key"
done
all_up "${survivors[@]}" || fail "a survivor lost a member while a stranger knocked"
echo "a process holding another key was admitted by nobody for 2 s"

for i in "${survivors[@]}"; do
  for j in "${survivors[@]}"; do
    grep -q "^DOWN $(addr "$j")\$" "$dir/out$i" && fail "node $i once reported live node $j DOWN"
  done
done
for i in "${survivors[@]}" "$stranger"; do kill -TERM "${pids[$i]}"; done
for i in "${survivors[@]}" "$stranger"; do
  wait "${pids[$i]}"
  status=$?
  [ $status -eq 0 ] || fail "node $i exited with status $status after SIGTERM"
done
pids=()
echo "PASS"
