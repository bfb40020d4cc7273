"""Bounds on every value a request carries, checked at the edge before anything runs.

Every string of every request message, nested messages included, is at most as long
as its field's limit below, and holds no control characters (free text may hold line
breaks and tabs) and no bidirectional-text controls; every repeated field holds at
most its limit of values. A request over a bound is refused with INVALID_ARGUMENT
naming the field, before it reaches the application, so nothing a caller sends can
grow an event, a read-model column, a log line or a metric label without bound.

The limits are no wider than the read-model columns the values end up in (insights
keeps a memo or a card entry's description in 500 characters), so a value accepted
here always fits downstream: no projection can fail on it. Each service's domain
checks shapes (codes, ids, phone numbers) on top.
"""

from __future__ import annotations

import re
import unicodedata

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from civitas.errors import InvalidInput

DEFAULT_CHARS = 100
"""Ids, codes, keys, names: anything not listed below."""

FREE_TEXT_CHARS = 500
FREE_TEXT = frozenset(
    {
        "answer",
        "comment",
        "declined_reason",
        "description",
        "duty",
        "evidence",
        "memo",
        "note",
        "purpose",
        "reason",
        "resolution",
        "summary",
        "terms",
    }
)
"""Fields of free text: up to 500 characters, line breaks and tabs allowed."""

LONGER_CHARS = {"address": 200, "page_token": 200, "title": 200}

DEFAULT_ITEMS = 50
ITEMS = {"attendance": 1000, "addresses": 200}

_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def limit_of(field: FieldDescriptor) -> int:
    """The most characters a string field may hold."""
    if field.name in FREE_TEXT:
        return FREE_TEXT_CHARS
    return LONGER_CHARS.get(field.name, DEFAULT_CHARS)


def check_request(message: Message) -> None:
    """Raise :class:`InvalidInput` naming the first value over its bound."""
    _check(message, "")


def check_text(label: str, value: str, limit: int, *, free_text: bool = False) -> None:
    """One string against a limit and the character rules (also used for metadata)."""
    if len(value) > limit:
        raise InvalidInput(f"{label} is longer than {limit} characters")
    allowed = "\n\t" if free_text else ""
    for char in value:
        if unicodedata.category(char) == "Cc" and char not in allowed:
            raise InvalidInput(f"{label} holds a control character (U+{ord(char):04X})")
    if _BIDI_CONTROLS.search(value):
        raise InvalidInput(f"{label} holds a bidirectional-text control character")


def _check(message: Message, prefix: str) -> None:
    for field, value in message.ListFields():
        label = f"{prefix}{field.name}"
        values = list(value) if field.is_repeated else [value]
        if field.is_repeated:
            most = ITEMS.get(field.name, DEFAULT_ITEMS)
            if len(values) > most:
                raise InvalidInput(f"{label} holds more than {most} values")
        for n, item in enumerate(values):
            where = f"{label}[{n}]" if field.is_repeated else label
            if field.type == FieldDescriptor.TYPE_STRING:
                check_text(where, item, limit_of(field), free_text=field.name in FREE_TEXT)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                _check(item, f"{where}.")  # request messages hold no maps
