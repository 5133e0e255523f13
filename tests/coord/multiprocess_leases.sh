#!/usr/bin/env bash
# Lease tokens cross hosts: issued in one process, verified in another, by
# wall-clock time (issue 12, bug 3: tokens were sealed with the steady clock,
# so another process read them as expired at once, or honoured them for days).
#
#   1. 3 coord_replica processes with the same --lease-seed: the leader seals
#      Ed25519 tokens for grants;
#   2. a coord_client process takes a lock N times and asks for each grant's
#      token (--tokens), printing the sealed bytes;
#   3. lease_check, a separate process holding only the public key, verifies
#      them at once: each is accepted, and expires between 0 and the session
#      TTL from now (wall clock);
#   4. after the TTL has passed, lease_check refuses every one as expired;
#      a token with one byte changed is refused as forged.
#
# usage: multiprocess_leases.sh coord_replica coord_client lease_check
set -uo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, claim_port_block
replica_bin=${1:?usage: $0 coord_replica coord_client lease_check}
client_bin=${2:?usage: $0 coord_replica coord_client lease_check}
check_bin=${3:?usage: $0 coord_replica coord_client lease_check}
for b in "$replica_bin" "$client_bin" "$check_bin"; do
  [ -x "$b" ] || { echo "FAIL: $b is not an executable (build the examples)"; exit 1; }
done
ttl_ms=1500
scratch  # $dir; every process in $pids is killed on exit (tests/multiprocess.sh)
use_keyring "$dir"  # every process authenticated, by one fresh key
fail() {
  echo "FAIL: $*"
  for i in 0 1 2; do echo "--- replica $i"; tail -n 10 "$dir/r$i.out" "$dir/r$i.err" 2>/dev/null; done
  echo "--- client"; tail -n 20 "$dir/c.out" "$dir/c.err" 2>/dev/null
  echo "--- checks"; cat "$dir"/check*.out 2>/dev/null
  exit 1
}
free_ports 3
seed=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for i in 0 1 2; do
  args=(--listen "127.0.0.1:${ports[$i]}" --data "$dir/data$i" --quiet --lease-seed "$seed")
  for j in 0 1 2; do [ "$j" != "$i" ] && args+=(--peer "127.0.0.1:${ports[$j]}"); done
  "$replica_bin" "${args[@]}" >"$dir/r$i.out" 2>"$dir/r$i.err" &
  pids+=($!)
done
for _ in $(seq 100); do grep -q '^LEASE' "$dir/r0.out" 2>/dev/null && break; sleep 0.05; done
public_key=$(grep -m1 '^LEASE' "$dir/r0.out" | sed 's/.*public_key=//')
[ -n "$public_key" ] || fail "replica 0 printed no LEASE public_key line"

# Ten clients, each taking its own lock once with a token. (One client taking
# one lock ten times would wait out each token before the next grant: a
# released permit is not handed on while its token is valid.)
cpids=()
for ((c = 0; c < 10; c++)); do
  timeout 60 "$client_bin" --server "127.0.0.1:${ports[0]}" --server "127.0.0.1:${ports[1]}" --server "127.0.0.1:${ports[2]}" \
    --id "c$c" --ops 1 --lock "L$c" --hold-ms 5 --ttl-ms "$ttl_ms" --tokens >"$dir/c$c.out" 2>"$dir/c$c.err" &
  cpids+=($!)
done
for ((c = 0; c < 10; c++)); do wait "${cpids[$c]}" || fail "coord_client c$c failed"; done
cat "$dir"/c?.out >"$dir/c.out"
tokens=$(grep -c '^TOKEN' "$dir/c.out")
[ "$tokens" -eq 10 ] || fail "expected 10 tokens, the clients printed $tokens"
check_all() {  # check_all OUT: every client's token through the verifier, one resource each; fails if any is refused
  local c rc=0
  : >"$1"
  for ((c = 0; c < 10; c++)); do
    "$check_bin" --public-key "$public_key" --resource "L$c" --max-drift-ms 50 <"$dir/c$c.out" >>"$1" || rc=1
  done
  return $rc
}

# At once, in another process: every token is accepted, and expires within the TTL by the wall clock.
check_all "$dir/check1.out" || fail "a fresh token was refused by the verifier in another process"
awk -v ttl="$ttl_ms" '$1 == "CHECK" { split($4, e, "="); if (e[2] + 0 <= 0 || e[2] + 0 > ttl) bad++ } END { exit bad > 0 }' \
  "$dir/check1.out" || fail "a token's wall-clock expiry is not within (0, TTL] of now"

# A token with one byte changed is refused as forged.
line=$(grep -m1 '^TOKEN' "$dir/c.out")
sealed=${line##*sealed=}; sealed=${sealed%% *}
flip=${sealed:60:1}; [ "$flip" = 0 ] && flip=1 || flip=0
name=${line#*name=}; name=${name%% *}
echo "TOKEN client=c1 name=$name token=0 sealed=${sealed:0:60}${flip}${sealed:61} at_us=0" >"$dir/forged.txt"
"$check_bin" --public-key "$public_key" --resource "$name" <"$dir/forged.txt" >"$dir/check2.out" && fail "an altered token was accepted"
grep -q 'result=ok' "$dir/check2.out" && fail "an altered token was accepted"

# After the TTL, every token is refused as expired.
sleep $(awk -v t="$ttl_ms" 'BEGIN { print (t + 300) / 1000 }')
check_all "$dir/check3.out"
grep -q 'result=ok' "$dir/check3.out" && fail "an expired token was accepted"
expired=$(grep -c 'result=lease token expired' "$dir/check3.out")
[ "$expired" -eq 10 ] || fail "expected 10 expired tokens, got $expired"
echo "OK: 10 tokens issued by the leader process, accepted by a verifier process on its wall clock, refused once expired"
