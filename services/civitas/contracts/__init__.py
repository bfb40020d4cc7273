"""The platform's event contracts, as others read them.

``events/<service>/<Type>.v<N>.json`` holds the JSON Schema of every version of every
event type each service publishes: generated from the event classes for the current
versions, kept as recorded for the older ones (their classes are gone; each notes the
upcaster that lifts it). The folder is package data: the services load it to check
what they consume (:func:`schemas_of`), and a consumer in another codebase copies it.
It is also the baseline the breaking check compares the classes with (``make
events-breaking``); ``make events-baseline`` moves it on purpose. The AsyncAPI document
(``make asyncapi``) is built from it.

This module imports only the kernel (the chassis wires consumers with it); what reads
the classes and the catalog lives in :mod:`.schemas`, :mod:`.breaking` and
:mod:`.asyncapi`.
"""

from __future__ import annotations

import functools
from pathlib import Path

from civitas.eventkit.schemas import EventSchemas

EVENTS = Path(__file__).resolve().parent / "events"


def folder(service: str) -> Path:
    """Where the schemas of ``service``'s events are kept."""
    return EVENTS / service


@functools.cache
def schemas_of(service: str) -> EventSchemas:
    """The schemas of every event ``service`` publishes, for its consumers to check with."""
    return EventSchemas.load(folder(service))
