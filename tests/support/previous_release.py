"""The event stores of the release before versioned migrations (main at 0fb97f5), to
make stores as that release made them (see tests/fixtures/release_0fb97f5)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FROZEN = Path(__file__).parents[1] / "fixtures" / "release_0fb97f5"


def previous_release(backend: str) -> ModuleType:
    """That release's module for ``backend`` ("postgres" or "sqlite"), loaded beside
    today's event kit, whose other modules it imports (they keep its interfaces)."""
    name = f"civitas.eventkit._release_0fb97f5_{backend}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "civitas.eventkit"
    source = FROZEN / f"{backend}.py.txt"
    sys.modules[name] = module
    exec(compile(source.read_text(), str(source), "exec"), module.__dict__)
    return module
