"""Folders and files the platform creates for itself: owner-only from the first moment.

Stores, read models and vaults hold events, personal-data keys and the token secret.
They are created private (folders 0700, files 0600) instead of being made with the
process's umask and tightened afterwards, which would leave a window in which another
local user could open them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dirs(path: Path) -> None:
    """Create ``path`` and each missing folder above it, each owner-only (0700).
    Folders that exist already are left as they are."""
    missing: list[Path] = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=PRIVATE_DIR)


def private_file(path: Path) -> None:
    """Create ``path`` empty and owner-only (0600), with its folders (0700), unless it
    exists. SQLite then opens it as a new database and gives the ``-wal`` and ``-shm``
    files beside it the same mode."""
    private_dirs(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))
