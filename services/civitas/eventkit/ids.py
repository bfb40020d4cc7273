"""Deterministic ids for natural keys.

A message delivered twice that creates "the volunteer profile of member M" must
not create two profiles: the id is derived from the key, not drawn at random.
"""

from __future__ import annotations

import os
import random
import re
import uuid

CIVITAS_NAMESPACE = uuid.UUID("5b0f2c1e-8f0a-4d8e-9c57-2a4c1d6e0b39")


def natural_id(kind: str, *key: object) -> uuid.UUID:
    """A uuid5 derived from a kind of thing and its natural key parts."""
    if not kind or not key:
        raise ValueError("natural_id needs a kind and at least one key part")
    text = "\x1f".join([kind, *(str(part) for part in key)])
    return uuid.uuid5(CIVITAS_NAMESPACE, text)


_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_uuid() -> uuid.UUID:
    """A random (version 4) uuid for ids that must be unique but need not be secret.

    ``uuid.uuid4()`` reads ``os.urandom`` on every call, which under a busy event
    loop waits for the interpreter lock each time; this draws from a generator
    seeded once from the OS (and again in a forked child, so processes differ).
    """
    return uuid.UUID(bytes=_ids.randbytes(16), version=4)


_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def parse_uuid(text: str) -> str | None:
    """``text`` as a canonical (lower-case) uuid when it is one written the usual way,
    else None. Stricter than ``uuid.UUID``, which also takes braces, ``urn:uuid:``,
    Unicode digits and a space where a digit should be, so that look-alikes of one id
    would name the same thing."""
    return str(uuid.UUID(text)) if _UUID_TEXT.fullmatch(text) else None
