# Civitas: `make run` starts the platform, `make test` sets up and runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BUF    := tools/node_modules/.bin/buf

.PHONY: run test lint typecheck check unit postgres-up kafka-up kafka-scram-up kafka-down prometheus-install prometheus-check deploy-check k8s-rules asyncapi events-breaking events-baseline proto proto-lint proto-breaking proto-baseline bench-eventstore bench-relay bench-grpc bench-funds bench-insights bench-replay bench-failover clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(STAMP)

$(BUF): tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --silent
	touch $(BUF)

run: $(STAMP)
	$(BIN)/civitas up

postgres-up:
	bash scripts/postgres-up.sh

# KAFKA_AUTH=scram: with SASL/SCRAM and ACLs, on its own ports (scripts/kafka-up.sh).
kafka-up: $(STAMP)
	bash scripts/kafka-up.sh

# The authenticated broker beside the plaintext one: the tests run against both.
kafka-scram-up: $(STAMP)
	KAFKA_AUTH=scram bash scripts/kafka-up.sh

kafka-down:
	bash scripts/kafka-down.sh

lint: $(STAMP)
	$(BIN)/ruff check services tests benchmarks
	$(BIN)/ruff format --check services tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck proto-lint proto-breaking events-breaking prometheus-check deploy-check

prometheus-install:
	bash scripts/prometheus-install.sh

# The shipped Prometheus config and alert rules, and the rules' unit tests.
prometheus-check: prometheus-install
	promtool check config deploy/prometheus/prometheus.yml
	promtool check config deploy/prometheus/compose.yml
	promtool check rules deploy/prometheus/rules/*.yml
	promtool test rules deploy/prometheus/tests/*.yml

# Dockerfiles, compose files and every k8s overlay, validated offline
# (scripts/deploy-check.sh). $(BUF) stands for tools/node_modules: the npm tools.
deploy-check: $(STAMP) $(BUF)
	bash scripts/deploy-check.sh

# k8s/base/monitoring/prometheus-rules.yaml from deploy/prometheus/rules/*.yml.
k8s-rules:
	python3 scripts/k8s-prometheus-rules.py

proto: $(STAMP)
	bash scripts/gen-proto.sh

proto-lint: $(BUF)
	cd proto && ../$(BUF) lint

# Breaking changes are checked against proto/baseline.json, the protos as last
# released; `make proto-baseline` moves it forward on purpose.
proto-breaking: $(BUF)
	cd proto && ../$(BUF) breaking --against baseline.json

proto-baseline: $(BUF)
	cd proto && ../$(BUF) build -o baseline.json

# Events as buf breaking does protos: the event classes against the schemas recorded in
# services/civitas/contracts/events/ (every version ever published); `make events-baseline`
# moves the record forward on purpose, and the AsyncAPI document with it.
events-breaking: $(STAMP)
	$(BIN)/python -m civitas.contracts.breaking

events-baseline: $(STAMP)
	$(BIN)/python -m civitas.contracts.schemas
	$(MAKE) asyncapi

asyncapi: $(STAMP)
	$(BIN)/python -m civitas.contracts.asyncapi > docs/asyncapi.json

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

test: $(STAMP) postgres-up kafka-up kafka-scram-up prometheus-install check
	bash scripts/chromium-install.sh
	$(BIN)/pytest -q -ra --durations=25

bench-eventstore: $(STAMP) postgres-up
	$(BIN)/python -m benchmarks.eventstore

bench-relay: $(STAMP) kafka-up
	$(BIN)/python -m benchmarks.relay

bench-grpc: $(STAMP)
	$(BIN)/python -m benchmarks.grpc_commands

bench-funds: $(STAMP)
	$(BIN)/python -m benchmarks.funds

bench-insights: $(STAMP)
	$(BIN)/python -m benchmarks.insights

bench-replay: $(STAMP)
	$(BIN)/python -m benchmarks.replay

# Its own PostgreSQL server and Kafka broker (postgres-up installs the server programs,
# kafka-up fetches the broker's jars), two replicas of every service, SIGKILLed leaders.
bench-failover: $(STAMP) postgres-up kafka-up
	$(BIN)/python -m benchmarks.failover

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
