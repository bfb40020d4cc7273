"""What the services left on disk, read as an outsider with the files would read it."""

from __future__ import annotations

from pathlib import Path


def files_bytes(root: Path) -> bytes:
    """Every file the services wrote: event stores, read models, vaults, WAL files."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())
