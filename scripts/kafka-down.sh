#!/usr/bin/env bash
# Stop the local broker started by kafka-up.sh, by its recorded pid.
set -euo pipefail
cd "$(dirname "$0")/.."
pidfile="${KAFKA_HOME:-.kafka}/kafka.pid"
[ -f "$pidfile" ] || { echo "kafka-down: no broker recorded"; exit 0; }
pid=$(cat "$pidfile")
if kill -0 "$pid" 2>/dev/null; then
  kill "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
fi
rm -f "$pidfile"
echo "kafka-down: broker $pid stopped"
