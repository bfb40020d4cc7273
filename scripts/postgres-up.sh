#!/usr/bin/env bash
# Start a local PostgreSQL for the tests and benchmarks: install the Debian
# package if it is missing, start the cluster, create the civitas role and
# databases. Safe to run again. Prints the test URL on its last line.
set -euo pipefail

user=civitas
password=civitas
databases=(civitas civitas_test civitas_bench)

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "postgres-up: installing PostgreSQL (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
  pg_createcluster "$version" main >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
  pg_ctlcluster "$version" main start
fi

wait_ready() {
  for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return
    sleep 0.2
  done
  pg_isready -h 127.0.0.1 -p 5432 >/dev/null
}
wait_ready

psql_admin() { su postgres -c "psql -v ON_ERROR_STOP=1 -qtA -c \"$1\""; }

# Two replicas of every service hold about 120 connections (their pools, leases and
# request logs; docs/replicas.md), and the tests run such a platform beside others:
# PostgreSQL's default of 100 is too few. The setting takes a restart, done once.
connections=${POSTGRES_MAX_CONNECTIONS:-400}
if [ "$(psql_admin "SHOW max_connections")" -lt "$connections" ]; then
  psql_admin "ALTER SYSTEM SET max_connections = $connections"
  pg_ctlcluster "$version" main restart
  wait_ready
fi
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" != "1" ]; then
  psql_admin "CREATE ROLE $user LOGIN PASSWORD '$password'"
fi
# The erasure tests CHECKPOINT and read the vault's relation files (DESIGN.md: no
# key byte may stay on disk after a forget); the test role may do that much.
psql_admin "GRANT pg_checkpoint, pg_read_all_settings TO $user" 2>/dev/null
for db in "${databases[@]}"; do
  if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
    psql_admin "CREATE DATABASE $db OWNER $user"
  fi
done
echo "postgresql://$user:$password@127.0.0.1:5432/civitas_test"
