#!/usr/bin/env bash
# make run: starts the server and, once it listens, prints how to try it.
# Usage: scripts/run.sh BIN HOST PORT [more `offload serve` flags]
#
# The server's stdout and stderr pass through unchanged. The "try: curl ..."
# banner follows the server's "offload listening on http://..." line, so it
# never shows when the server could not listen; a port already in use gets a
# hint instead. Ctrl-C, SIGTERM and SIGHUP are forwarded to the server (once
# per signal: the server runs in its own session, so a terminal's Ctrl-C does
# not also reach it directly), which drains and exits as it does on its own.
# The exit status is the server's.
set -uo pipefail

if [ $# -lt 3 ]; then
  echo "usage: $0 BIN HOST PORT [serve flags]" >&2
  exit 2
fi
bin=$1 host=$2 port=$3
shift 3

# The shipped command tasks (video.transcode, video.thumbnail) need ffmpeg:
# loaded when it is installed, and the banner says which.
root=$(cd "$(dirname "$0")/.." && pwd)
commands=()
if command -v ffmpeg >/dev/null 2>&1 && [ -f "$root/examples/commands.json" ]; then
  commands=(--commands "$root/examples/commands.json")
  video="video tasks on: video.transcode, video.thumbnail (examples/commands.json; ffmpeg found)"
else
  video="video tasks off: ffmpeg is not installed (apt-get install ffmpeg, then make run again)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/offload-run.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
mkfifo "$tmp/out" "$tmp/err" || exit 1

banner() {
  local url=${1%/} curl=curl
  case $url in *"["*) curl="curl -g" ;; esac # IPv6: no curl globbing
  cat <<EOF
offload: $url/  (Ctrl-C drains and stops)
  try: $curl "$url/tasks/reports/start?heavyIterations=2000000000"
       $curl $url/tasks/reports/<jobId>    # again: "processing", progress rising
       $curl -X POST $url/jobs -H 'Content-Type: application/json' -d '{"task":"primes","params":{"max":5000000000}}'
  $video
EOF
}

# The readers ignore the signals: they end when the server closes its output,
# so nothing it prints while draining is lost.
pass_stdout() {
  trap '' INT TERM HUP
  local line url
  while IFS= read -r line || [ -n "$line" ]; do
    printf '%s\n' "$line"
    case $line in
      "offload listening on http://"*)
        url=${line#offload listening on }
        banner "${url%% *}"
        ;;
    esac
  done
}
pass_stderr() {
  trap '' INT TERM HUP
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    printf '%s\n' "$line" >&2
    case $line in
      *"cannot listen on "*"address already in use"*) : >"$tmp/in-use" ;;
    esac
  done
}
pass_stdout <"$tmp/out" &
out_pid=$!
pass_stderr <"$tmp/err" &
err_pid=$!

# setsid: its own session and process group (a child of this script is never
# a group leader, so setsid execs in place and $! is the server's pid).
setsid "$bin" serve --host "$host" --port "$port" "${commands[@]}" "$@" </dev/null >"$tmp/out" 2>"$tmp/err" &
pid=$!

got=0
# shellcheck disable=SC2317 # called from the traps below
forward() {
  got=1
  kill -s "$1" "$pid" 2>/dev/null
}
trap 'forward INT' INT
trap 'forward TERM' TERM
trap 'forward TERM' HUP

# A trapped signal interrupts `wait` (status > 128); wait again for the
# server's own status. 127 after an interruption: the status just seen was it.
rc=
while :; do
  got=0
  wait "$pid"
  r=$?
  if [ "$r" -eq 127 ] && [ -n "$rc" ]; then break; fi
  rc=$r
  if [ "$got" -eq 1 ] && [ "$r" -gt 128 ]; then continue; fi
  break
done
for p in "$out_pid" "$err_pid"; do
  until wait "$p"; do kill -0 "$p" 2>/dev/null || break; done
done

if [ "$rc" -ne 0 ] && [ -e "$tmp/in-use" ]; then
  next=$((port + 1))
  [ "$next" -le 65535 ] || next=3001
  echo "offload: port $port is taken; try: make run PORT=$next (or PORT=0 for any free port)" >&2
fi
exit "$rc"
