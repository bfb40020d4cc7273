"""The k8s overlays as a cluster would get them: rendered by ``kubectl kustomize``, once
per test session, and looked up by kind."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import missing_dependency

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p for p in (ROOT / "k8s" / "overlays").iterdir() if p.is_dir())
VENV_BIN = str(ROOT / ".venv" / "bin")

Resource = dict[str, Any]


def host(service: str) -> str:
    """The service's host name in compose and Kubernetes (no underscores in DNS names)."""
    return service.replace("_", "-")


def image_var_dir(service: str) -> str:
    """The CIVITAS_VAR_DIR the service's image sets (deploy/docker/<service>.Dockerfile)."""
    dockerfile = (ROOT / "deploy" / "docker" / f"{service}.Dockerfile").read_text()
    found = re.search(r"CIVITAS_VAR_DIR=(\S+)", dockerfile)
    assert found, f"{service}'s image sets no CIVITAS_VAR_DIR"
    return found.group(1)


def load_yaml(text: str) -> list[Any]:
    """Every document of a YAML stream, less the empty ones."""
    try:
        import yaml
    except ImportError:
        missing_dependency("PyYAML (make deploy-check installs it into .venv)")
    return [document for document in yaml.safe_load_all(text) if document is not None]


def _kustomize() -> list[str]:
    """kubectl's kustomize, else a kustomize binary (scripts/deploy-check.sh builds one
    into the venv on a machine without kubectl)."""
    kubectl = shutil.which("kubectl")
    kustomize = shutil.which("kustomize") or shutil.which("kustomize", path=VENV_BIN)
    if kubectl is None and kustomize is None:
        missing_dependency("kubectl or kustomize (to render the kustomize overlays)")
    return [kubectl, "kustomize"] if kubectl else [str(kustomize), "build"]


@functools.cache
def rendered(overlay: Path) -> tuple[Resource, ...]:
    """Every resource the overlay makes."""
    run = subprocess.run([*_kustomize(), str(overlay)], capture_output=True, text=True, check=True)
    return tuple(load_yaml(run.stdout))


def of_kind(overlay: Path, kind: str) -> list[Resource]:
    """The overlay's resources of one kind."""
    return [resource for resource in rendered(overlay) if resource["kind"] == kind]


def overlay_named(name: str) -> Path:
    """The overlay ``k8s/overlays/<name>``."""
    (overlay,) = [o for o in OVERLAYS if o.name == name]
    return overlay


def service_deployments(overlay: Path) -> list[Resource]:
    """The services' Deployments (not a component's, such as the tracing collector)."""
    return [
        d
        for d in of_kind(overlay, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "service"
    ]


def configured(overlay: Path, container: Resource) -> dict[str, str]:
    """The settings a container takes from the overlay's ConfigMaps (``envFrom``)."""
    configs = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind(overlay, "ConfigMap")}
    names = [s["configMapRef"]["name"] for s in container["envFrom"] if "configMapRef" in s]
    return {k: v for name in names for k, v in configs[name].items()}
