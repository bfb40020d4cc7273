"""The generated gRPC code in services/ is what `make proto` makes from proto/ today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", "scripts/gen-proto.sh", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*"))

    assert generated, "gen-proto.sh generated nothing"
    for relative in generated:
        committed = ROOT / "services" / relative
        assert committed.exists(), f"{relative} is not committed: run `make proto`"
        assert committed.read_text() == (tmp_path / relative).read_text(), (
            f"{relative} is stale: run `make proto` and commit"
        )
