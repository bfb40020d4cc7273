"""What must hold once the load has stopped and the platform has settled after its
faults. Each check returns the problems it found, in words, so that a failing test
names every broken promise at once rather than the first."""

from __future__ import annotations

import contextlib
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from civitas import catalog
from civitas.chassis.settings import Locations
from civitas.eventkit import RecordedEvent, create_read_model_engine, open_event_store
from civitas.eventkit.kafka import events_topic
from civitas.eventkit.kafka.envelope import decode_message
from civitas.replay import catalog as projections
from civitas.replay import replay
from tests.support.failover_load import Answered, Load
from tests.support.processes import last_versions, messages_on, relayed, streams_applied

Stores = dict[str, list[RecordedEvent]]

# What each answered command must have stored exactly once: the event type, on the
# stream of the thing the command named.
RECORDED_BY = {
    "RegisterCase": ("case", "CaseRegistered"),
    "ClassifyCase": ("case", "CaseClassified"),
    "FileCase": ("case", "CaseFiled"),
    "DispatchCase": ("case", "CaseDispatched"),
    "Transfer": ("transfer", "TransferIntended"),
    "ImportActivity": ("activity", "ActivityCreated"),
}


PUBLISHING = ("party_orgs", "cases", "volunteers", "funds")
"""The services whose stores have events and a relay (insights only reads)."""


def locations(settings: Mapping[str, str]) -> dict[str, Locations]:
    """Where every service keeps its stores, by the platform's ``settings``."""
    return {service: Locations.of(service, settings) for service in catalog.names()}


async def read_stores(where: Mapping[str, Locations]) -> Stores:
    """Every event of each service's store, in the store's order."""
    events: Stores = {}
    for service in PUBLISHING:
        store = await open_event_store(where[service].eventstore_url)
        try:
            events[service] = await store.read_all(limit=10_000_000)
        finally:
            await store.close()
    return events


async def settled(where: Mapping[str, Locations], namespace: str, seconds: float) -> None:
    """Wait until each service's relay has published its whole store, and every
    projection has applied every stream of its source up to its last version."""
    for service in PUBLISHING:
        store = await open_event_store(where[service].eventstore_url)
        try:
            await relayed(store, service, namespace, seconds)
        finally:
            await store.close()
    for name, spec in projections().items():
        store = await open_event_store(where[spec.source].eventstore_url)
        try:
            wanted = {name: await last_versions(store, spec.build().filter)}
        finally:
            await store.close()
        engine = create_read_model_engine(where[spec.owner].read_model_url)
        try:
            await streams_applied(engine, wanted, f"{name} to apply every event", seconds)
        finally:
            engine.dispose()


def stored_once(stores: Stores, load: Load) -> list[str]:
    """Every answered command's event is stored exactly once on its stream, and no
    stream holds one of these events twice, answered or not, retried or not: a retry of
    a command whose replica died before its request id's row was written appends the
    ids its first run did (chassis/requests.py), and the store keeps them once."""
    counts: Counter[tuple[str, str]] = Counter()
    for events in stores.values():
        counts.update((e.stream_id, e.type) for e in events)
    kinds = {kind for _, kind in RECORDED_BY.values()}
    problems = [f"{s} holds {k} {n} times" for (s, k), n in counts.items() if n > 1 and k in kinds]
    for command in load.answered:
        stream, kind = _recorded(command)
        if counts[stream, kind] != 1:
            problems.append(
                f"{command.method} {command.key} was answered OK, and {stream} holds "
                f"{kind} {counts[stream, kind]} times"
            )
    return problems


def _recorded(command: Answered) -> tuple[str, str]:
    """The stream a command's event is on, and the event's type."""
    category, kind = RECORDED_BY[command.method]
    return f"{category}-{command.subject}", kind


def ledger_problems(funds: Iterable[RecordedEvent]) -> list[str]:
    """Each transfer booked once on each side, and the ledger summing to zero."""
    booked: Counter[tuple[str, str]] = Counter()
    total = 0
    for event in funds:
        if event.type in ("Debited", "Credited"):
            booked[event.type, event.data["transfer_id"]] += 1
            total += event.data["amount_fen"] * (-1 if event.type == "Debited" else 1)
    problems = [
        f"{kind} of transfer {tid} booked {n} times" for (kind, tid), n in booked.items() if n > 1
    ]
    transfers = {tid for _, tid in booked}
    problems += [
        f"transfer {tid} lacks its {kind}"
        for tid in transfers
        for kind in ("Debited", "Credited")
        if booked[kind, tid] != 1
    ]
    if total:
        problems.append(f"the ledger sums to {total} fen, not zero")
    return problems


async def topic_problems(stores: Stores, bootstrap: str, namespace: str) -> tuple[list[str], int]:
    """Every stored event on its service's topic, no stream with a version missing or
    one the store lacks; and how many messages were published more than once (a relay
    that died before its checkpoint moved publishes again: consumers pass those over)."""
    problems: list[str] = []
    again = 0
    for service, events in stores.items():
        published: dict[str, Counter[int]] = defaultdict(Counter)
        for _, value, _, _ in await messages_on(bootstrap, events_topic(service, namespace)):
            event = decode_message(value)
            published[event.stream_id][event.stream_version] += 1
        stored: dict[str, set[int]] = defaultdict(set)
        for event in events:
            stored[event.stream_id].add(event.stream_version)
        for stream in stored.keys() | published.keys():
            missing = sorted(stored[stream] - set(published[stream]))
            unknown = sorted(set(published[stream]) - stored[stream])
            if missing or unknown:
                problems.append(f"{service}: {stream} missing {missing[:5]}, unknown {unknown[:5]}")
            again += sum(n - 1 for n in published[stream].values())
    return problems, again


async def replay_problems(var: Path) -> list[str]:
    """``civitas replay <projection>`` (without a swap) of every projection, in this
    process, whose environment must hold the platform's settings: each live read model
    equals a rebuild from its source's store, else what the replay reported."""
    problems = []
    for name in projections():
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            differs = await replay(name, "store", False, var)
        if differs:
            problems.append(printed.getvalue()[-1500:])
    return problems
