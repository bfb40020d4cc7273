#!/usr/bin/env bash
# Start a local Apache Kafka broker (KRaft, one node on 127.0.0.1) from the jars
# on Maven Central named in deploy/kafka/pom.xml. Safe to run again: a broker
# already answering on the port is left alone.
#   KAFKA_AUTH     plaintext (default: anyone may do anything) or scram: SASL/SCRAM-SHA-512
#                  and ACLs (deploy/kafka/scram.properties), its own broker beside the
#                  plaintext one, with a password file per principal under
#                  $KAFKA_HOME/scram-<port>/ and the services' ACLs for
#                  CIVITAS_KAFKA_NAMESPACE (civitas)
#   KAFKA_PORT (9092; 9094 with scram), KAFKA_CONTROLLER_PORT (9093; 9095 with scram),
#   KAFKA_HOME (.kafka), KAFKA_HEAP (512m)
set -euo pipefail
cd "$(dirname "$0")/.."

auth=${KAFKA_AUTH:-plaintext}
case "$auth" in
  plaintext) port=${KAFKA_PORT:-9092}; controller_port=${KAFKA_CONTROLLER_PORT:-9093}; name=kafka ;;
  scram) port=${KAFKA_PORT:-9094}; controller_port=${KAFKA_CONTROLLER_PORT:-9095}; name=kafka-scram ;;
  *) echo "kafka-up: KAFKA_AUTH is plaintext or scram, not '$auth'" >&2; exit 2 ;;
esac
home=$(mkdir -p "${KAFKA_HOME:-.kafka}" && cd "${KAFKA_HOME:-.kafka}" && pwd)
heap=${KAFKA_HEAP:-512m}
python=${PYTHON:-.venv/bin/python}
pidfile="$home/$name.pid"
secrets="$home/scram-$port"
as_admin=()
[ "$auth" = scram ] && as_admin=(--sasl-user civitas-admin --password-file "$secrets/civitas-admin.password")
ready() { "$python" scripts/kafka_ready.py "127.0.0.1:$port" --timeout "${1:-1}" "${as_admin[@]}"; }

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && ready 5; then
  echo "kafka-up: $auth broker already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
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

# A password per principal, made once, readable by this user alone.
password() {
  local file="$secrets/$1.password"
  [ -s "$file" ] || (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$file")
  cat "$file"
}

data="$home/data-$port"
properties="$home/server-$port.properties"
format_users=()
if [ "$auth" = scram ]; then
  (umask 077 && mkdir -p "$secrets")
  admin_password=$(password civitas-admin)
  (umask 077 && cat deploy/kafka/server.properties deploy/kafka/scram.properties > "$properties.in")
  sed -i -e "s#@ADMIN_PASSWORD@#$admin_password#g" \
    -e "s#@CONTROLLER_PASSWORD@#$(password civitas-controller)#g" "$properties.in"
  principals=$("$python" -m civitas.cli kafka acls --principals)
  for user in civitas-admin $principals; do
    format_users+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(password "$user")]")
  done
else
  cp deploy/kafka/server.properties "$properties.in"
fi
(umask 077 && sed -e "s#@PORT@#$port#g" -e "s#@CONTROLLER_PORT@#$controller_port#g" \
  -e "s#@DATA_DIR@#$data#g" "$properties.in" > "$properties")
rm -f "$properties.in"

if [ ! -f "$data/meta.properties" ]; then
  cluster_id=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid)
  java -Dlog4j2.configurationFile="$PWD/deploy/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$home/logs" -cp "$libs/*" kafka.tools.StorageTool format --standalone \
    -t "$cluster_id" -c "$properties" "${format_users[@]}" >/dev/null
fi

logs="$home/logs"
[ "$auth" = scram ] && logs="$home/logs-scram"
mkdir -p "$logs"
nohup java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC \
  -Dlog4j2.configurationFile="$PWD/deploy/kafka/log4j2.properties" \
  -Dkafka.logs.dir="$logs" -cp "$libs/*" kafka.Kafka "$properties" \
  > "$logs/stdout.log" 2>&1 &
echo $! > "$pidfile"

if ! ready 90; then
  echo "kafka-up: the broker did not answer within 90 s; last log lines:" >&2
  tail -n 30 "$logs/server.log" "$logs/stdout.log" >&2 || true
  exit 1
fi
if [ "$auth" = scram ]; then
  CIVITAS_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT CIVITAS_KAFKA_USERNAME=civitas-admin \
    CIVITAS_KAFKA_PASSWORD_FILE="$secrets/civitas-admin.password" \
    "$python" -m civitas.cli kafka acls --apply --kafka "127.0.0.1:$port" \
    --namespace "${CIVITAS_KAFKA_NAMESPACE:-civitas}" >/dev/null
  echo "kafka-up: SASL/SCRAM broker ready on 127.0.0.1:$port (pid $(cat "$pidfile")), passwords in $secrets"
else
  echo "kafka-up: broker ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"
fi
