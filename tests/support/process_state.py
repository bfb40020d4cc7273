"""Process-wide state that code under test changes (the umask, logging), put back."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import structlog


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run with this umask; the old one afterwards."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@contextlib.contextmanager
def logging_put_back() -> Iterator[None]:
    """Let the code inside configure logging (structlog, the root logger, the umask the
    CLI sets); put all of it back afterwards."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    old_mask = os.umask(0o022)
    os.umask(old_mask)
    try:
        yield
    finally:
        structlog.configure(**config)
        structlog.contextvars.clear_contextvars()
        root.handlers[:] = handlers
        root.setLevel(level)
        os.umask(old_mask)
