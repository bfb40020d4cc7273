"""Validate rendered Kubernetes manifests offline.

    kubectl kustomize k8s/overlays/dev | python scripts/k8s_validate.py -

Every resource is checked against a schema, and a kind without one is an error:

- Kubernetes' own kinds: the OpenAPI schemas bundled in the PyPI package
  kubernetes-validate, strictly (an unknown field is an error), for each version in
  --kubernetes-version (by default 1.30, the oldest this project supports, and the
  newest the package knows);
- Strimzi's kinds (kafka.strimzi.io): the JSON Schemas in k8s/schemas, generated
  from Strimzi's own API model by its own CRD generator
  (scripts/vendor-strimzi-schemas.sh), strictly as well: the API server rejects
  unknown fields where a CRD's schema lists an object's properties;
- prometheus-operator's kinds (monitoring.coreos.com): the validators of the npm
  package @kubernetes-models/prometheus-operator (tools/validate-monitoring.mjs),
  which check types, formats and required fields but let unknown fields pass.

Besides, every name must be one Kubernetes accepts (a Service's a DNS label).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
CRD_SCHEMAS = ROOT / "k8s" / "schemas"
MONITORING_VALIDATOR = ROOT / "tools" / "validate-monitoring.mjs"
# The oldest Kubernetes this project supports, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

Resource = dict[str, Any]


def resources(text: str) -> Iterator[Resource]:
    for document in yaml.safe_load_all(text):
        if document:
            yield document


def describe(resource: Resource) -> str:
    return f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"


def name_problems(resource: Resource) -> list[str]:
    name = str(resource.get("metadata", {}).get("name", ""))
    if resource.get("kind") == "Service":
        if len(name) > 63 or not DNS_LABEL.match(name):
            return [f"a Service's name must be a DNS label: {name!r}"]
    elif len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        return [f"name must be a DNS subdomain: {name!r}"]
    return []


def strict(schema: Any) -> Any:
    """A CRD's structural schema as the API server applies it, for jsonschema: objects
    that list their properties take no others (unless they preserve unknown fields), and
    ``nullable`` allows null."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    if "properties" in schema:
        closed["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            closed.setdefault("additionalProperties", False)
    if schema.get("nullable") and isinstance(schema.get("type"), str):
        closed["type"] = [schema["type"], "null"]
    return closed


def crd_schema(resource: Resource) -> dict[str, Any] | None:
    group, _, version = str(resource.get("apiVersion", "")).rpartition("/")
    path = CRD_SCHEMAS / group / version / f"{str(resource.get('kind', '')).lower()}.json"
    return strict(json.loads(path.read_text())) if group and path.exists() else None


def crd_problems(resource: Resource, schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(resource), key=lambda e: list(e.path))
    ]


def kubernetes_problems(resource: Resource, versions: list[str]) -> list[str]:
    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path) or "(root)"
            problems.append(f"Kubernetes {version}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(f"Kubernetes {version}: {error.message}")
    return problems


def monitoring_problems(batch: list[Resource]) -> list[str]:
    if not batch:
        return []
    try:
        run = subprocess.run(
            ["node", str(MONITORING_VALIDATOR)],
            input=json.dumps(batch),
            capture_output=True,
            text=True,
            cwd=MONITORING_VALIDATOR.parent,
            check=False,
        )
    except FileNotFoundError:
        return ["node is not installed: cannot validate the monitoring.coreos.com resources"]
    if run.returncode not in (0, 1) or "ERR_MODULE_NOT_FOUND" in run.stderr:
        return [f"tools/validate-monitoring.mjs failed (run `make deploy-check`): {run.stderr}"]
    return run.stdout.splitlines()


def validate(text: str, source: str, versions: list[str]) -> tuple[list[str], Counter[str]]:
    problems: list[str] = []
    checked: Counter[str] = Counter()
    monitoring = []
    for resource in resources(text):
        where = f"{source}: {describe(resource)}"
        problems += [f"{where}: {p}" for p in name_problems(resource)]
        group = str(resource.get("apiVersion", "")).rpartition("/")[0]
        if group == "monitoring.coreos.com":
            monitoring.append(resource)
            checked["prometheus-operator (npm @kubernetes-models/prometheus-operator)"] += 1
        elif (schema := crd_schema(resource)) is not None:
            problems += [f"{where}: {p}" for p in crd_problems(resource, schema)]
            checked[f"{group} (vendored k8s/schemas, strict)"] += 1
        elif "." in group and not group.endswith(".k8s.io"):
            problems.append(f"{where}: no schema for {resource.get('apiVersion')}")
        else:
            problems += [f"{where}: {p}" for p in kubernetes_problems(resource, versions)]
            checked[f"Kubernetes {', '.join(versions)} (kubernetes-validate, strict)"] += 1
    problems += [f"{source}: {p}" for p in monitoring_problems(monitoring)]
    return problems, checked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="rendered manifests; - reads stdin")
    parser.add_argument("--kubernetes-version", action="append", dest="versions", help="repeatable")
    parser.add_argument("--name", help="what to call stdin in messages")
    args = parser.parse_args()
    failed = False
    for name in args.files:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
        source = args.name or name
        problems, checked = validate(text, source, args.versions or KUBERNETES_VERSIONS)
        for problem in problems:
            print(problem)
        counts = "; ".join(f"{n} against {what}" for what, n in sorted(checked.items()))
        print(f"{source}: {'FAILED' if problems else 'valid'}: {counts}")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
