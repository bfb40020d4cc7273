#!/usr/bin/env bash
# Start a local Apache Kafka broker (KRaft, one node on 127.0.0.1) from the jars
# on Maven Central named in deploy/kafka/pom.xml. Safe to run again: a broker
# already answering on the port is left alone.
#   KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_HOME (.kafka)
#   KAFKA_HEAP (512m)
set -euo pipefail
cd "$(dirname "$0")/.."

port=${KAFKA_PORT:-9092}
controller_port=${KAFKA_CONTROLLER_PORT:-9093}
home=$(mkdir -p "${KAFKA_HOME:-.kafka}" && cd "${KAFKA_HOME:-.kafka}" && pwd)
heap=${KAFKA_HEAP:-512m}
python=${PYTHON:-.venv/bin/python}
ready() { "$python" scripts/kafka_ready.py "127.0.0.1:$port" --timeout "${1:-1}"; }

if [ -f "$home/kafka.pid" ] && kill -0 "$(cat "$home/kafka.pid")" 2>/dev/null && ready 5; then
  echo "kafka-up: broker already running (pid $(cat "$home/kafka.pid")) on 127.0.0.1:$port"
  exit 0
fi

libs="$home/libs"
stamp="$libs/.pom.sha256"
want=$(sha256sum deploy/kafka/pom.xml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "kafka-up: fetching broker jars with Maven (cached in ~/.m2)"
  rm -rf "$libs" && mkdir -p "$libs"
  mvn -B -q -f deploy/kafka/pom.xml \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime
  echo "$want" > "$stamp"
fi

data="$home/data-$port"
mkdir -p "$home/logs"
sed -e "s#@PORT@#$port#g" -e "s#@CONTROLLER_PORT@#$controller_port#g" -e "s#@DATA_DIR@#$data#g" \
  deploy/kafka/server.properties > "$home/server-$port.properties"

if [ ! -f "$data/meta.properties" ]; then
  cluster_id=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid)
  java -Dlog4j2.configurationFile="$PWD/deploy/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$home/logs" -cp "$libs/*" kafka.tools.StorageTool format --standalone \
    -t "$cluster_id" -c "$home/server-$port.properties" >/dev/null
fi

nohup java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC \
  -Dlog4j2.configurationFile="$PWD/deploy/kafka/log4j2.properties" \
  -Dkafka.logs.dir="$home/logs" -cp "$libs/*" kafka.Kafka "$home/server-$port.properties" \
  > "$home/logs/stdout.log" 2>&1 &
echo $! > "$home/kafka.pid"

if ! ready 90; then
  echo "kafka-up: the broker did not answer within 90 s; last log lines:" >&2
  tail -n 30 "$home/logs/server.log" "$home/logs/stdout.log" >&2 || true
  exit 1
fi
echo "kafka-up: broker ready on 127.0.0.1:$port (pid $(cat "$home/kafka.pid"))"
