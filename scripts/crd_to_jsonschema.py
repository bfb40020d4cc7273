"""JSON Schemas of custom resources, taken from their CustomResourceDefinitions.

    python scripts/crd_to_jsonschema.py OUT_DIR CRD.yaml...

Writes OUT_DIR/<group>/<version>/<kind, lower case>.json for every served version:
that version's openAPIV3Schema as the CRD has it, less its descriptions (they are
documentation, and most of the bytes). scripts/k8s_validate.py reads them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def without_descriptions(schema: Any) -> Any:
    """The schema less its ``description`` keywords (a property named so is kept)."""
    if isinstance(schema, dict):
        return {
            key: without_descriptions(value)
            for key, value in schema.items()
            if not (key == "description" and isinstance(value, str))
        }
    if isinstance(schema, list):
        return [without_descriptions(item) for item in schema]
    return schema


def write_schemas(out: Path, crd: dict[str, Any]) -> list[Path]:
    spec = crd["spec"]
    written = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        path = out / spec["group"] / version["name"] / f"{spec['names']['kind'].lower()}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        schema = without_descriptions(version["schema"]["openAPIV3Schema"])
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def main(out: str, *crds: str) -> None:
    for name in crds:
        for document in yaml.safe_load_all(Path(name).read_text()):
            if document and document.get("kind") == "CustomResourceDefinition":
                for path in write_schemas(Path(out), document):
                    print(path)


if __name__ == "__main__":
    main(*sys.argv[1:])
