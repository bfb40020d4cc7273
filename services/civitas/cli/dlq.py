"""``civitas dlq list|show|retry|drop``: the events consumers parked, in their own stores.

Each projection and process manager keeps what it parked in the read-model database
of the service that runs it (the catalog says which); these commands read and mark
those rows there, on SQLite or PostgreSQL. ``retry`` only marks: the running consumer
applies the marked sequences in order within a few seconds (or when it next starts).
``drop`` keeps the rows, marked dropped with who, why and when; the events behind a
dropped one stay parked until they are retried or dropped too.

Every argument is checked before any database is opened, so a bad one changes nothing
anywhere. Row ids are each service's database's own, so ``--id`` goes with
``--consumer``. A ``drop`` of more than the rows named by id lists them and asks first.
The "who" of a drop is the operating-system account that ran it, next to the name
``--by`` gives (which nothing can check).
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa

from civitas import catalog
from civitas.chassis.limits import FREE_TEXT_CHARS, check_text
from civitas.chassis.settings import Locations
from civitas.cli.options import Commands, confirmed
from civitas.errors import InvalidInput
from civitas.eventkit import create_read_model_engine, parking
from civitas.eventkit.errors import InvalidStreamName
from civitas.eventkit.parking import ParkedEvent
from civitas.eventkit.records import MAX_METADATA_LENGTH, split_stream_id

T = TypeVar("T")


def dlq(commands: Commands, var_default: str) -> None:
    command = commands.add_parser("dlq", help="events consumers parked: list, show, retry, drop")
    actions = command.add_subparsers(dest="action", required=True)
    for name, help, run in (
        ("list", "list parked events (consumer, stream, version, reason, attempts)", _list),
        ("show", "every detail of parked events, the event itself included", _show),
        ("retry", "ask the running consumers to apply parked sequences again", _retry),
        ("drop", "give parked events up, with a reason (they are kept, marked)", _drop),
    ):
        action = actions.add_parser(name, help=help)
        action.add_argument("--consumer", help="a projection or process manager, e.g. cases_index")
        action.add_argument("--stream", help="one stream id, e.g. case-42")
        action.add_argument("--var", default=var_default)
        action.set_defaults(run=run)
        if name in ("show", "drop"):
            action.add_argument(
                "--id", type=int, action="append", dest="ids", help="a row id (with --consumer)"
            )
        if name in ("list", "show"):
            action.add_argument(
                "--all", action="store_true", help="also rows applied by a retry or dropped"
            )
        if name == "drop":
            action.add_argument("--reason", required=True, help="why (kept with the row)")
            action.add_argument("--by", help="who asked for it (kept next to your OS account)")
            action.add_argument("--yes", action="store_true", help="do not ask (for scripts)")


def consumers() -> dict[str, str]:
    """Every projection and process manager, with the service that runs it."""
    found = {p.name: s.name for s in catalog.SERVICES for p in s.projections}
    return found | {r.name: s.name for s in catalog.SERVICES for r in s.process_managers}


def _checked(args: argparse.Namespace) -> None:
    """Raise :class:`LookupError` for the first argument that is not acceptable."""
    known = consumers()
    if args.consumer is not None and args.consumer not in known:
        raise LookupError(f"no consumer {args.consumer!r}: one of {', '.join(sorted(known))}")
    if getattr(args, "ids", None) and args.consumer is None:
        raise LookupError("--id needs --consumer (each service's database numbers its own rows)")
    try:
        if args.stream is not None:
            split_stream_id(args.stream)
        if getattr(args, "reason", None) is not None:
            check_text("--reason", args.reason, FREE_TEXT_CHARS, free_text=True)
        if getattr(args, "by", None) is not None:
            check_text("--by", args.by, MAX_METADATA_LENGTH)
    except (InvalidStreamName, InvalidInput) as refused:
        raise LookupError(str(refused)) from None


def _in_each_store(
    args: argparse.Namespace, work: Callable[[sa.Connection, str], T]
) -> Iterator[T]:
    """``work(conn, service)`` in the store of each service that runs a consumer asked
    for (every one without ``--consumer``), in a transaction; stores without parked
    events (never run, or from before parking) are passed over."""
    known = consumers()
    services = [known[args.consumer]] if args.consumer else sorted(set(known.values()))
    for service in services:
        url = Locations.of(service, var=Path(args.var)).read_model_url
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            continue
        engine = create_read_model_engine(url)
        try:
            with engine.begin() as conn:
                if sa.inspect(conn).has_table(parking.parked_table.name):
                    yield work(conn, service)
        finally:
            engine.dispose()


def _states(args: argparse.Namespace) -> tuple[str, ...]:
    every = (*parking.BLOCKING, parking.APPLIED, parking.DROPPED)
    return every if getattr(args, "all", False) else parking.OPEN


def _rows(args: argparse.Namespace) -> list[ParkedEvent]:
    ids = getattr(args, "ids", None)

    def select(conn: sa.Connection, service: str) -> list[ParkedEvent]:
        return parking.select(
            conn, consumer=args.consumer, stream=args.stream, states=_states(args), ids=ids
        )

    return [row for rows in _in_each_store(args, select) for row in rows]


def _list(args: argparse.Namespace) -> int:
    return _guarded(args, _print_list)


def _print_list(args: argparse.Namespace) -> int:
    _print_rows(_rows(args))
    return 0


def _print_rows(rows: list[ParkedEvent]) -> None:
    print(
        f"{'id':>5}  {'consumer':<26} {'stream':<30} {'version':>7}  {'type':<24} "
        f"{'state':<8} {'tries':>5}  {'parked at':<20} reason / error"
    )
    for r in rows:
        version = "-" if r.stream_version is None else str(r.stream_version)
        print(
            f"{r.id:>5}  {r.consumer:<26} {r.stream_id:<30} {version:>7}  "
            f"{r.event_type or '(undecodable)':<24} {r.state:<8} {r.attempts:>5}  "
            f"{r.parked_at:%Y-%m-%d %H:%M:%S}  {r.reason}"
            + (f" / {_one_line(r.error)}" if r.error else "")
        )
    print(f"{len(rows)} parked event(s)", file=sys.stderr)


def _show(args: argparse.Namespace) -> int:
    return _guarded(args, _print_details)


def _print_details(args: argparse.Namespace) -> int:
    rows = _rows(args)
    for r in rows:
        print(f"id {r.id}: {r.consumer} {r.stream_id}@{r.stream_version} ({r.event_type})")
        print(f"  state      {r.state}")
        print(f"  reason     {r.reason}")
        print(f"  error      {r.error or '-'}")
        print(f"  attempts   {r.attempts}")
        print(f"  parked at  {r.parked_at.isoformat()}")
        if r.resolved_at is not None:
            print(f"  resolved   {r.resolved_at.isoformat()} by {r.resolved_by}: {r.resolution}")
        kind = "event" if r.stream_version is not None else "raw message, base64"
        print(f"  {kind:<10} {r.payload.decode('utf-8', 'replace')}")
    if not rows:
        print("no parked event matches", file=sys.stderr)
    return 0


def _retry(args: argparse.Namespace) -> int:
    def mark(conn: sa.Connection, service: str) -> int:
        return parking.request_retry(conn, args.consumer, args.stream)

    return _guarded(args, lambda a: _report(sum(_in_each_store(a, mark)), "marked for retry"))


def _drop(args: argparse.Namespace) -> int:
    if not args.reason.strip():
        print("civitas dlq drop: --reason must say why", file=sys.stderr)
        return 2
    if not (args.consumer or args.stream or args.ids):
        print("civitas dlq drop: name --consumer, --stream or --id", file=sys.stderr)
        return 2

    return _guarded(args, _drop_checked)


def _drop_checked(args: argparse.Namespace) -> int:
    """Drop the rows named by id, or after listing them and a yes, those that match."""
    rows = _rows(args)
    if not args.ids:
        _print_rows(rows)
        if rows and not args.yes and not confirmed(f"Drop these {len(rows)} parked event(s)"):
            print("civitas dlq: nothing dropped", file=sys.stderr)
            return 1
    by, owner = _dropped_by(args.by), consumers()

    def give_up(conn: sa.Connection, service: str) -> int:
        ids = [row.id for row in rows if owner[row.consumer] == service]
        return (
            parking.drop(conn, args.consumer, args.stream, by, args.reason, ids=ids) if ids else 0
        )

    return _report(sum(_in_each_store(args, give_up)), "dropped")


def _dropped_by(claimed: str | None) -> str:
    """Who dropped: the OS account running the command (from the kernel's user id, not
    from the environment), with the name ``--by`` claims next to it."""
    uid = os.getuid()
    try:
        account = pwd.getpwuid(uid).pw_name
    except KeyError:  # an account without a name (a container's bare uid)
        account = f"uid {uid}"
    return account if claimed in (None, account) else f"{claimed} (OS account {account})"


def _report(count: int, what: str) -> int:
    print(f"{count} parked event(s) {what}")
    if what.endswith("retry") and count:
        print("the running consumers apply them in order within a few seconds")
    return 0


def _guarded(args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    try:
        _checked(args)
        return run(args)
    except LookupError as refused:
        print(f"civitas dlq: {refused.args[0]}", file=sys.stderr)
        return 2


def _one_line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= 120 else first[:117] + "..."
