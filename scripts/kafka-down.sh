#!/usr/bin/env bash
# Stop the local brokers started by kafka-up.sh (plaintext, and with KAFKA_AUTH=scram
# the authenticated one), each by its recorded pid.
set -euo pipefail
cd "$(dirname "$0")/.."
stopped=0
for pidfile in "${KAFKA_HOME:-.kafka}"/kafka.pid "${KAFKA_HOME:-.kafka}"/kafka-scram.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$pidfile"
  stopped=$((stopped + 1))
  echo "kafka-down: broker $pid stopped ($(basename "$pidfile" .pid))"
done
[ "$stopped" -gt 0 ] || echo "kafka-down: no broker recorded"
