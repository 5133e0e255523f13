# Sourced by the DHT's multi-process tests (multiprocess_store.sh,
# multiprocess_udp.sh), after tests/multiprocess.sh: N dht_node processes
# driven through their stdin (a fifo each) and read from their stdout.
# Uses the caller's $bin, $n, $r, $dir, $ports, $pids, and $probe (agree);
# $router, when set, names the router in failures.

fds=()
reply=""

fail() {
  echo "FAIL${router:+ $router}: $*"
  for ((i = 0; i < n; i++)); do
    echo "--- node $i ($(addr "$i"), pid ${pids[$i]:-?}) stdout"; tail -n 8 "$dir/out$i" 2>/dev/null
    echo "--- node $i stderr"; tail -n 5 "$dir/err$i" 2>/dev/null
  done
  exit 1
}
addr() { echo "127.0.0.1:${ports[$1]}"; }
index_of() {  # the process listening on address $1
  for ((i = 0; i < n; i++)); do [ "$(addr "$i")" = "$1" ] && { echo "$i"; return 0; }; done
  return 1
}
alive() { kill -0 "${pids[$1]}" 2>/dev/null; }
exited() {  # the process has exited (a zombie not yet reaped counts)
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)
  [ -z "$state" ] || [ "$state" = Z ]
}
wait_for() {  # wait_for SECONDS COMMAND...: poll every 100 ms
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}
ask() {  # ask NODE "COMMAND ARGS" PREFIX SECONDS: send a command, wait for the next line starting with PREFIX
  local i=$1 cmd=$2 prefix=$3 secs=$4 before
  before=$(grep -c "^$prefix" "$dir/out$i" 2>/dev/null)
  echo "$cmd" >&"${fds[$i]}" || return 1
  local deadline=$((SECONDS + secs))
  while [ "$(grep -c "^$prefix" "$dir/out$i" 2>/dev/null)" -le "$before" ]; do
    [ $SECONDS -ge $deadline ] && { reply=""; return 1; }
    alive "$i" || { reply=""; return 1; }
    sleep 0.05
  done
  reply=$(grep "^$prefix" "$dir/out$i" | tail -n 1)
}
all_joined() {
  for ((i = 0; i < n; i++)); do grep -q '^JOINED' "$dir/out$i" 2>/dev/null || return 1; done
}
owners_of() {  # owners_of NODE KEY: sets owners=(addr...) as NODE's DHT names them
  owners=()
  ask "$1" "owners $2" "OWNERS $2 " 15 || return 1
  [[ "$reply" == *" error "* ]] && return 1
  read -r -a owners <<<"${reply#OWNERS $2 }"
  [ ${#owners[@]} -eq "$r" ]
}
agree() {  # the live nodes of $probe (two at least) name the same r owners for key $1
  local first="" i count=0
  for i in "${probe[@]}"; do
    owners_of "$i" "$1" || return 1
    if [ -z "$first" ]; then first="${owners[*]}"; elif [ "$first" != "${owners[*]}" ]; then return 1; fi
    count=$((count + 1))
  done
  [ $count -ge 2 ]
}
get_is() {  # get_is NODE KEY VALUE: a get from NODE returns VALUE
  ask "$1" "get $2" "GET $2 " 15 && [ "$reply" = "GET $2 ok $3" ]
}
owners_alive() {  # owners_alive NODE KEY: every owner NODE names is a live process
  owners_of "$1" "$2" || return 1
  local a j
  for a in "${owners[@]}"; do
    j=$(index_of "$a") || return 1
    alive "$j" || return 1
  done
}
pick_survivor() {  # a live process not in the list given
  local i
  for ((i = n - 1; i >= 0; i--)); do
    alive "$i" || continue
    [[ " $* " == *" $i "* ]] && continue
    echo "$i"
    return 0
  done
  return 1
}
start_nodes() {  # start_nodes ROUTER: process 0 founds the overlay; every other joins through it alone
  for ((i = 0; i < n; i++)); do
    mkfifo "$dir/in$i"
    args=(--router "$1" --listen "$(addr "$i")" --replicas "$r" --sync 1s --seed $((i + 1)))
    [ "$i" -gt 0 ] && args+=(--contact "$(addr 0)")
    "$bin" "${args[@]}" <"$dir/in$i" >"$dir/out$i" 2>"$dir/err$i" &
    pids[$i]=$!
    exec {fd}>"$dir/in$i"
    fds[$i]=$fd
    [ "$i" -eq 0 ] && { wait_for 10 grep -q '^LISTEN' "$dir/out0" || fail "the founder did not start"; }
  done
}
stop_nodes() {  # every live process is asked to quit, and must exit with status 0 within 10 s
  for ((i = 0; i < n; i++)); do alive "$i" && { echo quit >&"${fds[$i]}"; }; done
  for ((i = 0; i < n; i++)); do eval "exec ${fds[$i]}>&-"; done
  for ((i = 0; i < n; i++)); do
    alive "$i" || continue
    wait_for 10 exited "${pids[$i]}" || { kill -9 "${pids[$i]}"; fail "node $i did not stop on quit"; }
    wait "${pids[$i]}" || fail "node $i exited with status $?"
  done
}
