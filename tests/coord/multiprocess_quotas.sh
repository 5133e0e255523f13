#!/usr/bin/env bash
# Per-client quotas over TCP (keyring transport): 3 coord_replica processes
# with --quota 4,3,0 (3 keys per client). dcpctl with a fixed --listen
# address is one client across invocations: its 4th key is refused with exit
# status 1 and the words "quota exceeded: client 127.0.0.1:P owns 3 of 3
# keys"; another client (another address) still writes; removing one of the
# first client's keys lets it write again.
#
# usage: multiprocess_quotas.sh path/to/coord_replica path/to/dcpctl
set -uo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, use_keyring, wait_for
replica_bin=${1:?usage: $0 coord_replica dcpctl}
ctl_bin=${2:?usage: $0 coord_replica dcpctl}
replicas=3
for b in "$replica_bin" "$ctl_bin"; do
  [ -x "$b" ] || { echo "FAIL: $b is not an executable (build coord_replica and dcpctl)"; exit 1; }
done
scratch  # $dir; every process in $pids is killed on exit (tests/multiprocess.sh)
use_keyring "$dir"
fail() {
  echo "FAIL: $*"
  for ((i = 0; i < replicas; i++)); do echo "--- replica $i"; tail -n 10 "$dir/r$i.out" "$dir/r$i.err" 2>/dev/null; done
  exit 1
}
free_ports $((replicas + 2))  # the last two: the two clients' addresses
endpoints=""
for ((i = 0; i < replicas; i++)); do endpoints+="${endpoints:+,}127.0.0.1:${ports[$i]}"; done
export DCPCTL_ENDPOINTS=$endpoints
for ((i = 0; i < replicas; i++)); do
  args=(--listen "127.0.0.1:${ports[$i]}" --data "$dir/data$i" --quiet --quota 4,3,0)
  for ((j = 0; j < replicas; j++)); do [ "$j" != "$i" ] && args+=(--peer "127.0.0.1:${ports[$j]}"); done
  "$replica_bin" "${args[@]}" >"$dir/r$i.out" 2>"$dir/r$i.err" &
  pids[$i]=$!
done
a="127.0.0.1:${ports[$replicas]}"
b="127.0.0.1:${ports[$((replicas + 1))]}"

# ctl EXPECTED_STATUS ARGS...: runs dcpctl, output in $out (stdout) and $err (stderr).
ctl() {
  local want=$1 rc
  shift
  out=$("$ctl_bin" "$@" 2>"$dir/err")
  rc=$?
  err=$(cat "$dir/err")
  [ "$rc" = "$want" ] || fail "dcpctl $* exited $rc, not $want; stdout: $out; stderr: $err"
}

wait_for 20 "$ctl_bin" status --timeout 1s >/dev/null 2>&1 || fail "dcpctl status never saw a leader"
for k in k1 k2 k3; do ctl 0 --listen "$a" put "$k" v; done
ctl 1 --listen "$a" put k4 v
[[ $err == *"quota exceeded: client $a owns 3 of 3 keys"* ]] || fail "the 4th key: $err"
ctl 0 --listen "$b" put other v    # another client is not locked out
ctl 0 --listen "$a" put k1 again   # rewriting its own key is no new key
ctl 0 --listen "$a" del k2
ctl 0 --listen "$a" put k4 v       # freed
ctl 0 get k4
[ "$out" = $'k4\nv' ] || fail "get k4: $out"
echo "OK: the 4th key refused in words; another client writes; a removal frees quota"
