#!/usr/bin/env bash
# make run-cluster: a throwaway PostgreSQL in a temp dir and three offload
# nodes sharing it, on ports PORT, PORT+1, PORT+2 (3000-3002 by default).
# Usage: scripts/run-cluster.sh BIN [HOST [PORT [more `offload serve` flags]]]
#
# Each node's output is shown with its name in front ([node-3000] ...). The
# banner with curl examples follows once every node listens. Ctrl-C (or
# SIGTERM, SIGHUP) is forwarded to the nodes once (they run in their own
# sessions, so a terminal's Ctrl-C does not reach them twice), which drain and
# exit; then the database is stopped and the temp dir removed. A node that
# exits by itself (or that you kill to watch the others take its jobs over)
# is reported; the rest run on until Ctrl-C.
set -uo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 BIN [HOST [PORT [serve flags]]]" >&2
  exit 2
fi
bin=$1 host=${2:-127.0.0.1} port0=${3:-3000}
shift $(($# < 3 ? $# : 3))
root=$(cd "$(dirname "$0")/.." && pwd)

if [ ! -x "$bin" ]; then
  echo "run-cluster: $bin is not built (make build)" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/offload-cluster.XXXXXX") || exit 1
chmod 755 "$tmp" # the database runs as an unprivileged user (postgres, when this is root)
pids=() names=()

stop_all() {
  trap - INT TERM HUP EXIT
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  if [ -e "$tmp/pg/data/postmaster.pid" ]; then
    echo "run-cluster: stopping PostgreSQL" >&2
    python3 "$root/scripts/pgtmp.py" stop "$tmp/pg" >/dev/null 2>&1
  fi
  rm -rf "$tmp"
}
trap stop_all EXIT

echo "run-cluster: starting PostgreSQL in $tmp/pg" >&2
if ! url=$(python3 "$root/scripts/pgtmp.py" start "$tmp/pg" 2>&1); then
  printf '%s\n' "$url" >&2
  echo "run-cluster: PostgreSQL did not start (install it: make deps-test)" >&2
  exit 1
fi
url=$(printf '%s\n' "$url" | tail -n 1)

# The readers ignore the signals: they end when their node closes its output,
# so nothing a node prints while draining is lost.
prefix() {
  trap '' INT TERM HUP
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    printf '[%s] %s\n' "$1" "$line"
    case $line in
      *"cannot listen on "*"address already in use"*) : >"$tmp/in-use" ;;
    esac
  done
}

for i in 0 1 2; do
  port=$((port0 + i))
  name=node-$port
  # setsid: its own session (a child of this script is never a group leader,
  # so setsid execs in place and $! is the node's pid).
  setsid "$bin" serve --host "$host" --port "$port" --store postgres --pg-url "$url" \
    --node-id "$name" --advertise-url "http://$host:$port" "$@" \
    </dev/null > >(prefix "$name") 2> >(prefix "$name" >&2) &
  pids+=("$!")
  names+=("$name")
done

# Ready when each port takes a connection; a node that exits first failed.
ready() {
  (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null
}
for i in 0 1 2; do
  port=$((port0 + i))
  for _ in $(seq 1 200); do
    ready "$port" && break
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      sleep 0.2 # its last words reach the reader
      if [ -e "$tmp/in-use" ]; then
        echo "run-cluster: port $port is taken; try: make run-cluster PORT=$((port0 + 10))" >&2
      else
        echo "run-cluster: ${names[$i]} did not start" >&2
      fi
      exit 1
    fi
    sleep 0.1
  done
  if ! ready "$port"; then
    echo "run-cluster: ${names[$i]} does not answer on $host:$port" >&2
    exit 1
  fi
done

base="http://$host"
case $host in *:*) base="http://[$host]" ;; esac
a="$base:$port0" b="$base:$((port0 + 1))" c="$base:$((port0 + 2))"
cat <<EOF

offload cluster: node-$port0 $a, node-$((port0 + 1)) $b, node-$((port0 + 2)) $c
  database: $url  (in $tmp, removed at exit)
  Ctrl-C drains and stops the nodes, then the database.
  try: curl -s -X POST $a/jobs -H 'Content-Type: application/json' -d '{"task":"spin","params":{"ms":10000}}'
       curl -s $b/jobs/<id>            # any node answers for any job
       curl -s "$c/jobs/<id>?wait=30"  # held until the job ends, wherever it runs
       curl -s -X DELETE $c/jobs/<id>  # cancels it on the node that runs it
       curl -s $b/nodes                # every node, alive or not, and its workers
       curl -sN $c/events              # every node's job events
       kill -9 <pid of a node>         # the others take its jobs over
  pids: ${names[0]} ${pids[0]}, ${names[1]} ${pids[1]}, ${names[2]} ${pids[2]}

EOF

stopping=0
# shellcheck disable=SC2317 # called from the traps below
on_signal() {
  [ "$stopping" -eq 1 ] && return
  stopping=1
  echo "run-cluster: stopping the nodes (they drain), then PostgreSQL" >&2
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
}
trap on_signal INT TERM HUP

live=("${pids[@]}")
while [ "${#live[@]}" -gt 0 ]; do
  done_pid=
  # Returns when a node exits (its pid in done_pid) or a signal arrives.
  wait -n -p done_pid "${live[@]}" 2>/dev/null
  rc=$?
  [ -n "${done_pid:-}" ] || continue
  rest=()
  for pid in "${live[@]}"; do [ "$pid" = "$done_pid" ] || rest+=("$pid"); done
  live=("${rest[@]}")
  if [ "$stopping" -eq 0 ]; then
    for i in 0 1 2; do
      if [ "${pids[$i]}" = "$done_pid" ]; then
        echo "run-cluster: ${names[$i]} exited (status $rc); the others run on (Ctrl-C stops them)" >&2
      fi
    done
  fi
done
stop_all
exit 0
