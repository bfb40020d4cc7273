"""Checks on request values every domain shares."""

from __future__ import annotations

from civitas.errors import InvalidInput


def required_text(label: str, value: str, limit: int = 100) -> str:
    """A required, trimmed piece of text of at most ``limit`` characters."""
    value = (value or "").strip()
    if not value:
        raise InvalidInput(f"{label} is required")
    if len(value) > limit:
        raise InvalidInput(f"{label} is longer than {limit} characters")
    return value
