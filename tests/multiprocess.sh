# Sourced by the multi-process tests (tests/<chapter>/multiprocess_*.sh).
#
# Loopback ports. ctest runs tests concurrently, and each multi-process test
# starts servers on ports of its choosing. A port probed free can be taken by
# another test before the server binds it (CI once lost a run so: a surge
# client could not listen on a port a DHT test had just picked). So a test
# first claims a block of 256 ports for as long as it runs, by an flock(1) on
# a file named after the block, and picks its ports inside that block alone.
# The kernel drops the lock when the last process holding it exits, however
# it ends: a test killed on timeout leaves no stale claim. Blocks lie in
# 15000-32767, below the ephemeral range (32768+) from which the kernel gives
# outgoing connections their ports.

port_block_size=256
port_block=""  # the first port of this test's block, once claimed

# claim_port_block: set port_block to the first port of a block that no other
# test (of any concurrent ctest run of this user) holds.
claim_port_block() {
  [[ -n $port_block ]] && return 0
  local dir=${TMPDIR:-/tmp}/dcp-test-ports-$(id -u) blocks=$(((32768 - 15000) / port_block_size)) b
  mkdir -p "$dir"
  for _ in $(seq 500); do
    b=$((RANDOM % blocks))
    exec {port_lock_fd}>"$dir/$b"
    if flock -n "$port_lock_fd"; then
      port_block=$((15000 + b * port_block_size))
      return 0
    fi
    exec {port_lock_fd}>&-
  done
  echo "FAIL: no free block of $port_block_size test ports in 500 tries" >&2
  exit 1
}

# free_ports K: set ports=(K distinct ports of this test's block on which
# nobody accepts now). Ports outside dcp's tests may still take one before it
# is bound; the tests that start many servers retry on new ports.
free_ports() {
  claim_port_block
  ports=()
  local p
  while ((${#ports[@]} < $1)); do
    p=$((port_block + RANDOM % port_block_size))
    [[ " ${ports[*]} " == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then ports+=("$p"); fi
  done
}

# new_key_file FILE: a fresh keyring key (64 hex digits) in FILE, for the
# examples' --transport keyring:FILE (examples/secure_node.hpp).
new_key_file() {
  od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$1"
  echo >>"$1"
}

# use_keyring DIR: every dcp process this test starts runs the keyring
# transport with a fresh key (DIR/cluster.keys), named in DCP_TRANSPORT.
use_keyring() {
  new_key_file "$1/cluster.keys"
  export DCP_TRANSPORT="keyring:$1/cluster.keys"
}

# wait_for SECONDS COMMAND...: runs COMMAND every 20 ms until it succeeds;
# fails (returns 1) if SECONDS pass first.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.02
  done
}

# scratch: a fresh directory, $dir, and an empty list, $pids, of the processes
# the test starts. On exit, however the test ends, every process still in
# $pids is killed and the directory removed (kept and named with KEEP=1, for
# a post-mortem).
scratch() {
  dir=$(mktemp -d)
  pids=()
  trap scratch_cleanup EXIT
}
scratch_cleanup() {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  ((${#pids[@]} == 0)) || wait "${pids[@]}" 2>/dev/null || true  # reap them (and keep bash's "Killed" notices quiet)
  if [[ -n ${KEEP:-} ]]; then echo "kept $dir"; else rm -rf "$dir"; fi
}
