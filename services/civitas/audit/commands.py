"""``civitas audit verify``, ``upgrade`` and ``history``: read each service's own
event store directly (where its settings say it is), and change nothing."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from sqlalchemy import make_url

from civitas import catalog
from civitas.chassis.settings import Locations
from civitas.eventkit import Aggregate, EventStore, open_event_store, stream_parts
from civitas.eventkit.audit import ChainReport

from .history import Histories

EVENT_KEEPERS = catalog.event_keepers()


def aggregates_of(service: str) -> list[type[Aggregate]]:
    """The aggregates a service keeps (its spec says)."""
    return catalog.spec(service).aggregate_types()


def owner_of(category: str) -> str:
    for service in EVENT_KEEPERS:
        if any(a.category == category for a in aggregates_of(service)):
            return service
    raise SystemExit(f"no service keeps {category!r} streams")


def known_service(service: str) -> str:
    """``service`` if it keeps events, else a :class:`ValueError` naming those that do."""
    if service not in EVENT_KEEPERS:
        raise ValueError(f"{service!r} keeps no events: one of {', '.join(EVENT_KEEPERS)}")
    return service


async def open_store(service: str, var: Path) -> EventStore:
    """A service's existing event store: an audit never creates one (a SQLite file that
    is not there is an error, not a new empty store)."""
    url = store_url(known_service(service), var)
    if missing := _missing_file(url):
        raise ValueError(f"{service} has no event store at {missing}")
    return await open_event_store(url)


def _missing_file(url: str) -> Path | None:
    """The SQLite file a store URL names, when it is not there."""
    path = Path(make_url(url).database or "") if url.startswith("sqlite:") else None
    return path if path is not None and not path.is_file() else None


def keepers_present(services: list[str], var: Path) -> list[str]:
    """``services`` when named; else every service that keeps events and whose store is
    there (a SQLite file that is missing is said and skipped, not created)."""
    if services:
        return services
    present = []
    for service in EVENT_KEEPERS:
        if _missing_file(store_url(service, var)):
            print(f"{service}: no event store on this machine, skipped", file=sys.stderr)
            continue
        present.append(service)
    return present


def store_url(service: str, var: Path) -> str:
    return Locations.of(service, var=var).eventstore_url


async def verify(services: list[str], var: Path) -> int:
    """Verify each service's chains; 1 when any link is broken."""
    broken = 0
    for service in keepers_present(services, var):
        store = await open_store(service, var)
        try:

            def progress(position: int, service: str = service) -> None:
                print(f"\r{service}: checked up to position {position:,}", end="", file=sys.stderr)

            report = await store.verify(progress=progress)
        finally:
            await store.close()
        print("", file=sys.stderr)
        _print_report(service, report)
        broken += len(report.broken)
    return 1 if broken else 0


def _print_report(service: str, report: ChainReport) -> None:
    verdict = "intact" if report.intact else f"{len(report.broken)} broken"
    print(f"{service}: {report.events:,} events in {report.streams:,} streams: {verdict}")
    if report.digest is None:
        print("  no ledger on this backend: each stream's chain only")
    else:
        print(
            f"  ledger: {report.sealed:,} events sealed, {report.unsealed:,} not yet "
            f"(appended during the check); last link {report.digest.hex()}"
        )
    if report.snapshots:
        print(
            f"  snapshots: {report.snapshots:,}, {report.unbound_snapshots:,} from before "
            "bindings (not trusted: rebuilt from events)"
        )
    if report.first is not None:
        first = report.first
        print(f"  first bad global position: {first.position} ({first.stream_id})")
    for link in report.broken:
        where = f"position {link.position}" if link.position else "its head record"
        print(f"  first broken link: {link.stream_id} revision {link.stream_version} ({where})")
        print(f"    {link.reason}")


async def upgrade(services: list[str], var: Path) -> int:
    """Chain each service's history into its ledger (a store from before the ledger;
    idempotent: a store that has one already seals only what is new), then verify."""
    for service in keepers_present(services, var):
        store = await open_store(service, var)
        try:
            sealed = await store.seal()
            report = await store.verify()
        finally:
            await store.close()
        print(f"{service}: {sealed:,} events added to the ledger")
        _print_report(service, report)
        if not report.intact:
            return 1
    return 0


async def history(
    stream_id: str, as_of: str | None, version: int | None, service: str | None, var: Path
) -> int:
    category, _ = stream_parts(stream_id)
    service = service or owner_of(category)
    moment = datetime.fromisoformat(as_of) if as_of else None
    store = await open_store(service, var)
    try:
        found = await Histories(store, aggregates_of(service)).history(
            stream_id, as_of=moment, version=version
        )
    finally:
        await store.close()
    print(f"{found.stream_id} at revision {found.version} ({service})")
    print(json.dumps(found.state, ensure_ascii=False, indent=2, sort_keys=True, default=str))
    print("\nevents:")
    for e in found.events:
        print(
            f"  {e.stream_version:>4}  {e.occurred_at.isoformat()}  {e.type:<28} "
            f"actor={e.actor or '-'}  correlation={e.correlation_id or '-'}"
        )
    return 0
