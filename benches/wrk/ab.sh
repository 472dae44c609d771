#!/usr/bin/env bash
# A/B HTTP load of searchd builds, back to back (run it under the bench lock):
#
#   flock /tmp/bench.lock benches/wrk/ab.sh SECONDS BINARY [BINARY...]
#
# For each binary in turn: starts it on /tmp/snap-global (port 18480 + index, access log on,
# stderr to /tmp/ab-<index>.log), waits for /readyz, runs wrk (2 threads, 32 connections,
# keep-alive) on direct OSL-BUD, priced 1-stop OSL-YYC and the rotation over
# benches/wrk/urls.txt (or the kinds in $KINDS), prints req/s, p50/p99 and the server's VmHWM, then stops it with
# SIGTERM (graceful) and reports the access-log line count against the requests wrk made.
set -euo pipefail
secs=${1:?seconds}
shift
snap=${SNAP:-/tmp/snap-global}
urls=${WRK_URLS:-benches/wrk/urls.txt}
# Checked before any server starts: under `set -e` a missing wrk used to end the script at
# its first load and leave that searchd running on the port.
command -v wrk >/dev/null || { echo "ab.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
pid=
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' EXIT
direct='/v1/search?origin=OSL&destination=BUD&date=2026-04-05&max_connections=0'
onestop='/v1/search?origin=OSL&destination=YYC&date=2026-04-05'
idx=0
for bin in "$@"; do
  port=$((18480 + idx))
  log=/tmp/ab-$idx.log
  "$bin" --snapshot "$snap" --listen 127.0.0.1:$port --now 2026-04-01T00:00:00Z 2>"$log" &
  pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "== $bin (pid $pid, port $port) $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  total=0
  for kind in ${KINDS:-direct onestop rotation}; do
    case $kind in
      direct) out=$(wrk -t2 -c32 -d"${secs}"s --latency "http://127.0.0.1:$port$direct") ;;
      onestop) out=$(wrk -t2 -c32 -d"${secs}"s --latency "http://127.0.0.1:$port$onestop") ;;
      rotation) out=$(WRK_URLS=$urls wrk -t2 -c32 -d"${secs}"s --latency -s benches/wrk/rotate.lua "http://127.0.0.1:$port") ;;
    esac
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p90=$(awk '$1=="90%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    errs=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ' || true)
    total=$((total + n))
    printf '%-9s %10s req/s  p50 %-8s p90 %-8s p99 %-8s n=%s %s\n' "$kind" "$rps" "$p50" "$p90" "$p99" "$n" "$errs"
  done
  hwm=$(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status)
  rss=$(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
  lines=$(grep -c '"searchd::access"' "$log" || true)
  echo "VmHWM $hwm  VmRSS $rss  access-log lines $lines (+1 readyz) for $total wrk requests"
  idx=$((idx + 1))
done
cat /proc/loadavg
