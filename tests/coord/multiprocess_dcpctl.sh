#!/usr/bin/env bash
# dcpctl from outside: 3 coord_replica processes on loopback (with lease
# tokens), then dcpctl put/get/del/txn/watch/lock/elect/status/member and
# reads at a revision with compaction, as a user
# types them, checking what each prints and its exit status; finally every
# replica is SIGKILLed and each command must fail with exit status 1 and the
# client's words ("no leader reachable: 3 of 3 replicas refused").
#
# usage: multiprocess_dcpctl.sh path/to/coord_replica path/to/dcpctl
set -uo pipefail
source "$(dirname "$0")/../multiprocess.sh"  # free_ports, claim_port_block, wait_for
replica_bin=${1:?usage: $0 coord_replica dcpctl}
ctl_bin=${2:?usage: $0 coord_replica dcpctl}
replicas=3
for b in "$replica_bin" "$ctl_bin"; do
  [ -x "$b" ] || { echo "FAIL: $b is not an executable (build coord_replica and dcpctl)"; exit 1; }
done
dir=$(mktemp -d)
use_keyring "$dir"  # every process authenticated, by one fresh key
pids=()
bg=()
cleanup() {
  for p in "${pids[@]}" "${bg[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for ((i = 0; i < replicas; i++)); do echo "--- replica $i"; tail -n 10 "$dir/r$i.out" "$dir/r$i.err" 2>/dev/null; done
  exit 1
}
free_ports $((replicas + 1))  # the last one for the replica that member add brings in
endpoints=""
for ((i = 0; i < replicas; i++)); do endpoints+="${endpoints:+,}127.0.0.1:${ports[$i]}"; done
export DCPCTL_ENDPOINTS=$endpoints
seed=$(printf '%064x' 12)  # an Ed25519 seed, the same on every replica: they seal lease tokens
for ((i = 0; i < replicas; i++)); do
  args=(--listen "127.0.0.1:${ports[$i]}" --data "$dir/data$i" --quiet --lease-seed "$seed")
  for ((j = 0; j < replicas; j++)); do [ "$j" != "$i" ] && args+=(--peer "127.0.0.1:${ports[$j]}"); done
  "$replica_bin" "${args[@]}" >"$dir/r$i.out" 2>"$dir/r$i.err" &
  pids[$i]=$!
done

# ctl EXPECTED_STATUS ARGS...: runs dcpctl, output in $out (stdout) and $err (stderr).
ctl() {
  local want=$1 rc
  shift
  out=$("$ctl_bin" "$@" 2>"$dir/err")
  rc=$?
  err=$(cat "$dir/err")
  [ "$rc" = "$want" ] || fail "dcpctl $* exited $rc, not $want; stdout: $out; stderr: $err"
}
expect() {  # expect WHAT ACTUAL EXPECTED
  [ "$2" = "$3" ] || fail "$1: got [$2], expected [$3]"
}

# status: exit 0 once one replica leads; then one row per replica, one leader, the term shared.
wait_for 20 "$ctl_bin" status --timeout 1s >/dev/null 2>&1 || fail "dcpctl status never saw a leader"
ctl 0 status
expect "status rows" "$(tail -n +2 <<<"$out" | wc -l)" 3
expect "status leaders" "$(awk '$2 == "leader"' <<<"$out" | wc -l)" 1
leader=$(awk '$2 == "leader" { print $1 }' <<<"$out")
expect "followers name the leader" "$(awk -v l="$leader" 'NR > 1 && $4 == l' <<<"$out" | wc -l)" 3
expect "one term" "$(awk 'NR > 1 { print $3 }' <<<"$out" | sort -u | wc -l)" 1
ctl 0 status --json
[[ $out == '[{"endpoint":'* ]] || fail "status --json: $out"

# put, get, get --prefix, --revisions, --json; a missing key prints nothing.
ctl 0 put foo bar
expect "put" "$out" "OK"
ctl 0 get foo
expect "get" "$out" $'foo\nbar'
ctl 0 get missing
expect "get missing" "$out" ""

# Strangers: a client holding another key, and one in plaintext, are refused
# and change nothing (issue #11: an unauthenticated process cannot use the service).
new_key_file "$dir/other.keys"
for t in "keyring:$dir/other.keys" plaintext; do
  DCP_TRANSPORT=$t ctl 1 put intruder "$t" --timeout 1s
  DCP_TRANSPORT=$t ctl 1 lock L --timeout 1s -- true
done
ctl 0 get intruder
expect "a stranger's put" "$out" ""
ctl 0 get foo
expect "get after the strangers" "$out" $'foo\nbar'
ctl 0 put svc/a 1
ctl 0 put svc/b 'two words'
ctl 0 get --prefix svc/
expect "get --prefix" "$out" $'svc/a\n1\nsvc/b\ntwo words'
ctl 0 get foo --revisions
expect "get --revisions" "$out" $'revision=3\nfoo\nbar\ncreate_revision=1 mod_revision=1 version=1'
ctl 0 get --json svc/b
expect "get --json" "$out" '{"revision":3,"kvs":[{"key":"svc/b","value":"two words","create_revision":3,"mod_revision":3,"version":1,"ephemeral":false}]}'

# watch from a revision: the events after it, in order, then exit at --count.
"$ctl_bin" watch --prefix w/ --from-rev 4 --count 3 >"$dir/watch.out" 2>"$dir/watch.err" &
watcher=$!
bg+=("$watcher")
ctl 0 put w/1 x
ctl 0 put w/2 y
ctl 0 del w/1
expect "del" "$out" 1
wait_for 5 sh -c "! kill -0 $watcher 2>/dev/null" || fail "watch did not exit after 3 events"
wait "$watcher"
expect "watch status" "$?" 0
expect "watch events" "$(cat "$dir/watch.out")" $'PUT\nw/1\nx\nPUT\nw/2\ny\nDELETE\nw/1'
ctl 0 watch w/2 --from-rev 1 --count 1 --json
expect "watch --json" "$out" '{"type":"PUT","kv":{"key":"w/2","value":"y","create_revision":5,"mod_revision":5,"version":1,"ephemeral":false}}'

# txn from flags, then from stdin (etcdctl's form); a compare that fails takes the else branch.
ctl 0 txn --if 'value foo = bar' --then 'put foo baz' --then 'del --prefix svc/' --else 'put foo nope'
expect "txn success" "$out" "SUCCESS"
ctl 0 get --prefix svc/
expect "txn removed the prefix" "$out" ""
ctl 0 txn --if 'value foo = bar' --then 'put foo again' --else 'put lost yes'
expect "txn failure" "$out" "FAILURE"
ctl 0 get foo
expect "after txn" "$out" $'foo\nbaz'
out=$(printf 'version("foo") = 2\nmod(lost) > 0\n\nput t "from stdin"\n\nput t no\n' | "$ctl_bin" txn --json 2>&1) || fail "txn from stdin: $out"
[[ $out == '{"succeeded":true,"revision":'* ]] || fail "txn from stdin: $out"
ctl 0 get t
expect "txn from stdin" "$out" $'t\nfrom stdin'
ctl 2 txn --if 'size foo > 1' --then 'put a b'
[[ $err == *"unknown compare target size"* ]] || fail "a bad compare: $err"

# del
ctl 0 del foo
expect "del" "$out" 1
ctl 0 del foo
expect "del again" "$out" 0

# lock -- CMD: CMD runs with the lock, sees its name and fencing token; dcpctl exits with CMD's status.
ctl 7 lock L -- sh -c 'echo "cmd $DCP_LOCK_NAME $DCP_FENCING_TOKEN"; exit 7'
first=$(sed -n 's/^locked name=L fencing=\([0-9]*\)$/\1/p' <<<"$out")
[ -n "$first" ] || fail "lock printed no fencing token: $out"
expect "lock's command" "$(tail -n 1 <<<"$out")" "cmd L $first"
# Three at once: never two inside, tokens in the order they entered.
for k in 1 2 3; do
  "$ctl_bin" lock L -- sh -c "echo \"in \$DCP_FENCING_TOKEN\" >>'$dir/mutex'; sleep 0.2; echo \"out \$DCP_FENCING_TOKEN\" >>'$dir/mutex'" \
    >/dev/null 2>>"$dir/lock.err" &
  bg+=($!)
  lockers+=($!)
done
for p in "${lockers[@]}"; do wait "$p" || fail "a contending lock failed: $(cat "$dir/lock.err")"; done
awk 'NR % 2 == 1 { if ($1 != "in" || $2 <= last) bad = 1; t = $2 }
     NR % 2 == 0 { if ($1 != "out" || $2 != t) bad = 1; last = t }
     END { exit bad || NR != 6 }' "$dir/mutex" || fail "lock: overlapping holders or tokens out of order: $(cat "$dir/mutex")"
# --token: a sealed lease token from the leader, as hex, for CMD too.
ctl 0 lock L --token -- sh -c '[ -n "$DCP_LEASE_TOKEN" ]'
[[ $out =~ lease_token=[0-9a-f]{64,} ]] || fail "lock --token: $out"

# put --ephemeral: the key lives while dcpctl does.
"$ctl_bin" put --ephemeral eph here >"$dir/eph.out" 2>"$dir/eph.err" &
eph=$!
bg+=("$eph")
wait_for 5 grep -q '^OK revision=' "$dir/eph.out" || fail "put --ephemeral: $(cat "$dir/eph.out" "$dir/eph.err")"
ctl 0 get eph
expect "ephemeral key" "$out" $'eph\nhere'
kill -TERM "$eph"
wait "$eph"
expect "put --ephemeral after SIGTERM" "$?" 0
ctl 0 get eph
expect "ephemeral key after its session" "$out" ""

# elect: a leader, seen by an observer.
"$ctl_bin" elect E alice >"$dir/elect.out" 2>"$dir/elect.err" &
candidate=$!
bg+=("$candidate")
wait_for 5 grep -q '^leader name=E value=alice fencing=' "$dir/elect.out" || fail "elect: $(cat "$dir/elect.out" "$dir/elect.err")"
ctl 0 elect E --observe --count 1
expect "observe" "$out" "alice"
kill -TERM "$candidate"
wait "$candidate"
expect "elect after SIGTERM" "$?" 0

# get --rev N: the keys as they were at revision N (etcdctl's); compaction N
# discards the history below N on every replica; a read below it then fails
# with exit 1, "compacted", and one above the current revision "future revision".
ctl 0 put mv/k one
ctl 0 get mv/k --revisions
r1=$(sed -n 's/^revision=//p' <<<"$out")
ctl 0 put mv/k two
ctl 0 put mv/other x
ctl 0 del mv/k
ctl 0 get --prefix mv/ --rev "$r1"
expect "get --rev (first put)" "$out" $'mv/k\none'
ctl 0 get --prefix mv/ --rev $((r1 + 1))
expect "get --rev (second put)" "$out" $'mv/k\ntwo'
ctl 0 get --prefix mv/ --rev $((r1 + 2)) --revisions
expect "get --rev --revisions" "$out" "revision=$((r1 + 2))"$'\nmv/k\ntwo\n'"create_revision=$r1 mod_revision=$((r1 + 1)) version=2"$'\nmv/other\nx\n'"create_revision=$((r1 + 2)) mod_revision=$((r1 + 2)) version=1"
ctl 0 get --prefix mv/
expect "get now" "$out" $'mv/other\nx'
ctl 1 get mv/k --rev $((r1 + 100))
[[ $err == *"future revision: $((r1 + 100)) is above the store's current revision $((r1 + 3))"* ]] || fail "get --rev in the future: $err"
ctl 0 compaction $((r1 + 1))
expect "compaction" "$out" "compacted revision $((r1 + 1))"
ctl 1 get mv/k --rev "$r1"
[[ $err == *"compacted: revision $r1 is below the compact revision $((r1 + 1))"* ]] || fail "get --rev below the compaction: $err"
ctl 0 get mv/k --rev $((r1 + 1))
expect "get --rev at the compact revision" "$out" $'mv/k\ntwo'
ctl 1 compaction "$r1"
[[ $err == *"compacted: revision $r1 is below the compact revision $((r1 + 1)) already"* ]] || fail "compaction below: $err"
ctl 1 watch mv/ --prefix --from-rev "$r1" --count 1
[[ $err == *"compacted"* ]] || fail "watch from below the compaction: $err"
# Every replica answers the same after the compaction: kill the leader, read at the revision from the next.
ctl 0 status
old_leader=$(awk '$2 == "leader" { print $1 }' <<<"$out")
for ((i = 0; i < replicas; i++)); do
  if [ "127.0.0.1:${ports[$i]}" = "$old_leader" ]; then kill -9 "${pids[$i]}"; wait "${pids[$i]}" 2>/dev/null; killed=$i; fi
done
wait_for 20 "$ctl_bin" status --endpoints "$(tr ',' '\n' <<<"$endpoints" | grep -v "^$old_leader\$" | paste -sd,)" --timeout 1s >/dev/null 2>&1 ||
  fail "no new leader after the old one was killed"
ctl 0 get --prefix mv/ --rev $((r1 + 2))
expect "get --rev on the new leader" "$out" $'mv/k\ntwo\nmv/other\nx'
ctl 1 get mv/k --rev "$r1"
[[ $err == *"compacted: revision $r1 is below the compact revision $((r1 + 1))"* ]] || fail "get --rev below the compaction, new leader: $err"
args=(--listen "127.0.0.1:${ports[$killed]}" --data "$dir/data$killed" --quiet --lease-seed "$seed")
for ((j = 0; j < replicas; j++)); do [ "$j" != "$killed" ] && args+=(--peer "127.0.0.1:${ports[$j]}"); done
"$replica_bin" "${args[@]}" >>"$dir/r$killed.out" 2>>"$dir/r$killed.err" &
pids[$killed]=$!
wait_for 20 "$ctl_bin" status --timeout 1s >/dev/null 2>&1 || fail "the restarted replica did not rejoin"

# member list/add/promote/remove, move-leader: a fourth replica, started
# knowing the group, is added as a learner, catches up, is promoted, and
# takes the leadership; one of the first three (not the leader) is removed
# and stopped; the group goes on.
ctl 0 member list
expect "member list" "$(sort <<<"$out")" "$(tr ',' '\n' <<<"$endpoints" | sort)"
new="127.0.0.1:${ports[$replicas]}"
args=(--listen "$new" --data "$dir/data$replicas" --quiet --lease-seed "$seed")
for ((j = 0; j < replicas; j++)); do args+=(--peer "127.0.0.1:${ports[$j]}"); done
"$replica_bin" "${args[@]}" >"$dir/r$replicas.out" 2>"$dir/r$replicas.err" &
pids[$replicas]=$!
ctl 0 member add "$new" --learner
expect "member add --learner" "$(head -n 1 <<<"$out")" "added $new"
expect "members after add --learner" "$(tail -n +2 <<<"$out" | sort)" "$( (tr ',' '\n' <<<"$endpoints"; echo "$new learner") | sort)"
ctl 1 member add "$new"
[[ $err == *"$new is already a member"* ]] || fail "member add again: $err"
ctl 1 move-leader "$new"
[[ $err == *"not a voter (promote a learner first)"* ]] || fail "move-leader to a learner: $err"
all4="$endpoints,$new"
converged() {  # every endpoint of $1 answers, one leads, all at one revision
  local s
  s=$("$ctl_bin" status --endpoints "$1" --timeout 1s 2>/dev/null) || return 1
  [ "$(awk 'NR > 1 { print $7 }' <<<"$s" | sort -u | wc -l)" = 1 ]
}
ctl 0 put members four
wait_for 20 converged "$all4" || fail "the added replica did not catch up: $("$ctl_bin" status --endpoints "$all4" --timeout 1s 2>&1)"
ctl 0 member promote "$new"
expect "member promote" "$(head -n 1 <<<"$out")" "promoted $new"
expect "members after promote" "$(tail -n +2 <<<"$out" | sort)" "$( (tr ',' '\n' <<<"$endpoints"; echo "$new") | sort)"
ctl 0 move-leader "$new" --endpoints "$all4"
expect "move-leader" "$out" "leader $new"
wait_for 20 converged "$all4" || fail "no settled group after move-leader"
ctl 0 status --endpoints "$all4"
expect "leader after move-leader" "$(awk '$2 == "leader" { print $1 }' <<<"$out")" "$new"
leader=$(awk '$2 == "leader" { print $1 }' <<<"$out")
for ((gone = 0; gone < replicas; gone++)); do [ "127.0.0.1:${ports[$gone]}" != "$leader" ] && break; done
ctl 0 member remove "127.0.0.1:${ports[$gone]}" --endpoints "$all4"
expect "member remove" "$(head -n 1 <<<"$out")" "removed 127.0.0.1:${ports[$gone]}"
kill -9 "${pids[$gone]}"
wait "${pids[$gone]}" 2>/dev/null
DCPCTL_ENDPOINTS=$(tr ',' '\n' <<<"$all4" | grep -vx "127.0.0.1:${ports[$gone]}" | paste -sd,)
export DCPCTL_ENDPOINTS
ctl 0 member list
expect "member list after remove" "$(sort <<<"$out")" "$(tr ',' '\n' <<<"$DCPCTL_ENDPOINTS" | sort)"
ctl 0 put members three
ctl 0 get members
expect "get after the changes" "$out" $'members\nthree'
wait_for 20 converged "$DCPCTL_ENDPOINTS" || fail "the group did not settle after the removal"
ctl 1 member remove "127.0.0.1:${ports[$gone]}"
[[ $err == *"is not a member"* ]] || fail "member remove again: $err"

# Every replica killed: each command fails, status 1, in the client's words;
# a lock held over a command is lost when its session expires: the command
# gets SIGTERM and dcpctl exits 1, saying why.
"$ctl_bin" lock held --ttl 1s -- sleep 30 >"$dir/held.out" 2>"$dir/held.err" &
holder=$!
bg+=("$holder")
wait_for 5 grep -q '^locked name=held fencing=' "$dir/held.out" || fail "lock held: $(cat "$dir/held.out" "$dir/held.err")"
for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
wait_for 5 sh -c "! kill -0 $holder 2>/dev/null" || fail "the lock's command went on after its session expired"
wait "$holder"
expect "lock after its session expired" "$?" 1
grep -q '^dcpctl: lost the lock held: session expired: keepalives unanswered for' "$dir/held.err" ||
  fail "lost lock: $(cat "$dir/held.err")"
echo "$(cat "$dir/held.err")"
ctl 1 put k v --timeout 1s
[[ $err == *"no leader reachable: 3 of 3 replicas refused"* ]] || fail "put with no replica: $err"
echo "$err"
ctl 1 get k --timeout 1s
[[ $err == *"no leader reachable: 3 of 3 replicas refused"* ]] || fail "get with no replica: $err"
ctl 1 lock L --timeout 1s -- true
[[ $err == *"no leader reachable: 3 of 3 replicas refused"* ]] || fail "lock with no replica: $err"
ctl 1 status --timeout 1s
[[ $err == *"no leader reachable: 3 of 3 replicas did not answer"* ]] || fail "status with no replica: $err"
expect "status rows with no replica" "$(grep -c 'unreachable' <<<"$out")" 3
echo "PASS"
