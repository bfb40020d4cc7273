"""The ``civitas`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import sys
import time
from pathlib import Path

from civitas import catalog, runner
from civitas.chassis.auth import MAX_TOKEN_SECONDS, Role, TokenAuthority
from civitas.chassis.logs import configure_logging, redact_text
from civitas.chassis.settings import (
    Locations,
    UnsafeSecretFile,
    from_environment,
    read_secret,
)
from civitas.eventkit import open_event_store
from civitas.eventkit.config import DEFAULT_EVENTSTORE_URL


def _audit(args: argparse.Namespace) -> int:
    from civitas.audit import commands
    from civitas.errors import DomainError

    try:
        if args.audit in ("anchor", "prove", "check-proof") or getattr(args, "anchor", None):
            return _anchors(args)
        if args.audit == "verify":
            return asyncio.run(commands.verify(args.service, Path(args.var)))
        if args.audit == "upgrade":
            return asyncio.run(commands.upgrade(args.service, Path(args.var)))
        return asyncio.run(
            commands.history(args.stream, args.as_of, args.version, args.owner, Path(args.var))
        )
    except (DomainError, ValueError) as refused:
        print(f"civitas audit: {refused}", file=sys.stderr)
        return 2


def _anchors(args: argparse.Namespace) -> int:
    from civitas.audit import anchoring, commands
    from civitas.eventkit.anchors import AnchorError

    var = Path(args.var)
    try:
        if args.audit == "anchor":
            return asyncio.run(anchoring.anchor(args.service, var, args.public_key_only))
        if args.audit == "prove":
            return asyncio.run(anchoring.prove_event(args.stream, args.revision, args.owner, var))
        if args.audit == "check-proof":
            return anchoring.check_proof_file(args.proof, args.digest, args.public_key, var)
        verified = asyncio.run(commands.verify(args.service, var))
        anchored = asyncio.run(
            anchoring.verify_anchor(args.service, var, args.anchor, args.public_key)
        )
        return verified or anchored
    except (AnchorError, ValueError) as failed:  # AnchorError is a ValueError
        print(f"civitas audit {args.audit}: {failed}", file=sys.stderr)
        return 1


def positive_seconds(text: str) -> float:
    """An argument in seconds, above zero."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0 seconds: {text!r}")
    return seconds


_UNITS = {"s": 1, "m": 60, "h": 3600}


def token_lifetime(text: str) -> int:
    """A token's lifetime: whole seconds (``3600``) or with a unit (``90m``, ``8h``),
    from 1 s to :data:`MAX_TOKEN_SECONDS` (12 h)."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    if not re.fullmatch(r"[0-9]{1,6}", number):
        raise argparse.ArgumentTypeError(f"not a lifetime (3600, 90m, 8h): {text!r}")
    seconds = int(number) * _UNITS[unit]
    if not 1 <= seconds <= MAX_TOKEN_SECONDS:
        raise argparse.ArgumentTypeError(
            f"a token lives from 1 s to 12 h ({MAX_TOKEN_SECONDS} s), not {text!r}"
        )
    return seconds


def _token(args: argparse.Namespace) -> str:
    secret = from_environment("auth_secret") or read_secret(Path(args.var))
    if not secret:
        raise SystemExit("no token secret: set CIVITAS_AUTH_SECRET or run `civitas up` first")
    authority = TokenAuthority(secret)
    try:
        return authority.mint(args.subject, args.role, args.scope, ttl_seconds=args.ttl)
    except ValueError as refused:  # a malformed subject or scope
        raise SystemExit(f"civitas: no token: {refused}") from None


async def _call(args: argparse.Namespace) -> str:
    from civitas.call import call

    if not args.token:  # a district admin's, living as long as the call may take
        ttl = min(MAX_TOKEN_SECONDS, max(600, math.ceil(args.timeout) + 60))
        args.role, args.scope, args.subject, args.ttl = ["district_admin"], ["QH"], "cli", ttl
    return await call(
        args.method, args.request, args.token or _token(args), args.address, args.timeout
    )


async def _demo(args: argparse.Namespace) -> None:
    from civitas.demo import (
        load_case_funding,
        load_cases,
        load_funds,
        load_party_orgs,
        load_volunteers,
    )

    args.role, args.scope, args.subject, args.ttl = ["district_admin"], ["QH"], "demo", 3600
    token = _token(args)
    started = time.perf_counter()
    print(f"civitas demo: the district into party_orgs at {args.party_orgs}")
    if not await load_party_orgs(args.party_orgs, token, args.members):
        print("  loaded already; left as it is")
    print(f"civitas demo: a year of requests into cases at {args.cases_address}")
    if not await load_cases(args.cases_address, token, args.requests):
        print("  loaded already; left as it is")
    print(f"civitas demo: volunteers and a year of activities at {args.volunteers_address}")
    await load_volunteers(args.volunteers_address, token, args.members, args.activities)
    print(f"civitas demo: a year of community funds at {args.funds_address}")
    args.subject = "demo-approver"  # expenditures are approved by someone else
    approver_token = _token(args)
    if not await load_funds(args.funds_address, token, approver_token, args.expenditures):
        print("  loaded already; left as it is")
    print("civitas demo: cases asking the community fund for money (the saga)")
    if not await load_case_funding(args.cases_address, args.funds_address, token, approver_token):
        print("  loaded already; left as it is")
    print(f"civitas demo: done in {time.perf_counter() - started:.0f}s")


async def _relay(url: str, bootstrap: str, service: str, partitions: int, batch_size: int) -> None:
    from civitas.eventkit.kafka import Relay, TopicSpec, events_topic

    store = await open_event_store(url)
    topic = TopicSpec(events_topic(service), partitions=partitions)
    print(f"civitas: relaying {redact_text(url)} to {topic.name} on {bootstrap}", flush=True)
    try:
        await Relay(store, bootstrap, topic, batch_size=batch_size).run()
    finally:
        await store.close()


async def _events(url: str, stream: str | None, limit: int) -> None:
    store = await open_event_store(url)
    try:
        if stream:
            events = await store.read_stream(stream, limit=limit)
        else:
            events = await store.read_all(limit=limit)
        for event in events:
            print(
                f"{event.position:>8} {event.stream_id}@{event.stream_version} {event.type} "
                f"{event.occurred_at.isoformat()} actor={event.actor} {event.data}"
            )
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``civitas`` command. What it creates (var/, stores, shadow read
    models, the token secret) is its owner's alone, and its logs mask secrets."""
    os.umask(0o077)
    configure_logging("cli")
    try:
        return _run(argv)
    except UnsafeSecretFile as refused:
        print(f"civitas: {refused}", file=sys.stderr)
        return 2


def _run(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="civitas", description=__doc__)
    parser.add_argument(
        "--store",
        default=None,
        help="event store URL (default: the --service's own store, else "
        f"$CIVITAS_EVENTSTORE_URL or {DEFAULT_EVENTSTORE_URL})",
    )
    var_default = from_environment("var_dir", default="var")
    commands = parser.add_subparsers(dest="command", required=True)

    up_cmd = commands.add_parser("up", help="run every service on this machine until Ctrl-C")
    up_cmd.add_argument("--var", default=var_default, help="embedded stores (default: %(default)s)")
    up_cmd.add_argument(
        "--ready-within",
        type=positive_seconds,
        default=30.0,
        help="seconds each service has to become healthy (default 30)",
    )

    token_cmd = commands.add_parser("token", help="mint a bearer token for local use")
    token_cmd.add_argument(
        "--role",
        action="append",
        required=True,
        choices=[r.value for r in Role],
        help="repeat for several roles",
    )
    token_cmd.add_argument(
        "--scope",
        action="append",
        default=[],
        help="unit code the person works for (QH, QH-03, ...); repeatable",
    )
    token_cmd.add_argument("--subject", default="local-user")
    token_cmd.add_argument(
        "--ttl",
        type=token_lifetime,
        default=3600,
        help="lifetime: seconds, or 90m, 8h (default 1 h, at most 12 h)",
    )
    token_cmd.add_argument("--var", default=var_default)

    relay_cmd = commands.add_parser("relay", help="publish a service's events to its topic")
    relay_cmd.add_argument(
        "--service",
        required=True,
        help="service name, e.g. cases (its own store, unless --store names another)",
    )
    relay_cmd.add_argument(
        "--kafka",
        default=from_environment("kafka_bootstrap", default="127.0.0.1:9092"),
        help="bootstrap servers (default: $CIVITAS_KAFKA_BOOTSTRAP or %(default)s)",
    )
    relay_cmd.add_argument("--partitions", type=int, default=6)
    relay_cmd.add_argument("--batch-size", type=int, default=1000)

    def address_of(service: str) -> str:
        default = f"127.0.0.1:{catalog.spec(service).grpc_port}"
        return from_environment(f"{service}_address") or default

    demo_cmd = commands.add_parser("demo", help="load the seed's district into running services")
    demo_cmd.add_argument("--party-orgs", default=address_of("party_orgs"))
    demo_cmd.add_argument("--members", type=int, default=6000)
    demo_cmd.add_argument("--cases-address", default=address_of("cases"))
    demo_cmd.add_argument("--requests", type=int, default=6029)
    demo_cmd.add_argument("--volunteers-address", default=address_of("volunteers"))
    demo_cmd.add_argument("--activities", type=int, default=1000)
    demo_cmd.add_argument("--funds-address", default=address_of("funds"))
    demo_cmd.add_argument("--expenditures", type=int, default=500)
    demo_cmd.add_argument("--var", default=var_default)

    call_cmd = commands.add_parser(
        "call", help='call an RPC: civitas call party_orgs.GetAdminUnit \'{"code":"QH"}\''
    )
    call_cmd.add_argument("method", help="SERVICE.Method, e.g. party_orgs.ResolveGrid")
    call_cmd.add_argument("request", nargs="?", default="{}", help="the request as JSON")
    call_cmd.add_argument("--address", help="host:port (default: the service's local port)")
    call_cmd.add_argument("--token", help="bearer token (default: a district admin's)")
    call_cmd.add_argument(
        "--timeout", type=positive_seconds, default=5.0, help="deadline in seconds (default 5)"
    )
    call_cmd.add_argument("--var", default=var_default)

    audit_cmd = commands.add_parser("audit", help="verify hash chains; show an aggregate's history")
    audits = audit_cmd.add_subparsers(dest="audit", required=True)
    verify_cmd = audits.add_parser(
        "verify", help="recompute the global chain and every stream's; check snapshots"
    )
    verify_cmd.add_argument(
        "--service", action="append", default=[], help="repeatable (default: every service)"
    )
    verify_cmd.add_argument("--var", default=var_default)
    verify_cmd.add_argument(
        "--anchor",
        metavar="FILE|DIGEST",
        help="also prove the store extends these anchors: an anchors file, a signed anchor's "
        "JSON, or '<service> <tree_size> <root hex>'",
    )
    verify_cmd.add_argument(
        "--public-key", default="", help="hex or PEM file (default: the local anchor key's)"
    )
    upgrade_cmd = audits.add_parser(
        "upgrade", help="once, for a store from before the ledger: chain its history (idempotent)"
    )
    upgrade_cmd.add_argument("--service", action="append", default=[], help="repeatable")
    upgrade_cmd.add_argument("--var", default=var_default)
    anchor_cmd = audits.add_parser("anchor", help="print each service's signed current digest")
    anchor_cmd.add_argument("--service", action="append", default=[], help="repeatable")
    anchor_cmd.add_argument(
        "--public-key", dest="public_key_only", action="store_true", help="print the public key"
    )
    anchor_cmd.add_argument("--var", default=var_default)
    prove_cmd = audits.add_parser("prove", help="a Merkle inclusion proof of one event (JSON)")
    prove_cmd.add_argument("stream", help="e.g. case-<id>")
    prove_cmd.add_argument("revision", type=int, help="the event's revision (0 is the first)")
    prove_cmd.add_argument("--service", dest="owner", help="the store (default: by category)")
    prove_cmd.add_argument("--var", default=var_default)
    check_cmd = audits.add_parser("check-proof", help="check a proof alone, against a digest")
    check_cmd.add_argument("proof", help="the file `civitas audit prove` wrote")
    check_cmd.add_argument(
        "--digest", help="the published digest (default: the anchor in the proof)"
    )
    check_cmd.add_argument(
        "--public-key", default="", help="hex or PEM file (default: the local anchor key's)"
    )
    check_cmd.add_argument("--var", default=var_default)
    history_cmd = audits.add_parser("history", help="an aggregate's state then, and its events")
    history_cmd.add_argument("stream", help="e.g. case-<id>, account-fund:QH-01-01:special")
    when = history_cmd.add_mutually_exclusive_group()
    when.add_argument("--as-of", help="ISO time with zone, e.g. 2026-03-01T00:00:00+08:00")
    when.add_argument("--version", type=int, help="a revision (0 is the first event)")
    history_cmd.add_argument("--service", dest="owner", help="the store (default: by category)")
    history_cmd.add_argument("--var", default=var_default)

    forget_cmd = commands.add_parser(
        "forget", help="erase a person: delete their key in every service's vault"
    )
    forget_cmd.add_argument("person", help="person id: resident-…, volunteer-… or a member id")
    for keeper in catalog.personal_data_keepers():
        forget_cmd.add_argument(
            f"--{keeper.replace('_', '-')}", dest=keeper, default=address_of(keeper)
        )
    forget_cmd.add_argument("--token", help="bearer token (default: a district admin's)")
    forget_cmd.add_argument("--var", default=var_default)

    replay_cmd = commands.add_parser(
        "replay", help="rebuild a read model beside the live one, compare, swap on request"
    )
    replay_cmd.add_argument("projection", help="e.g. insights_cases, funds_ledger, cases_index")
    replay_cmd.add_argument("--source", choices=["store", "kafka"], default="store")
    replay_cmd.add_argument(
        "--swap", action="store_true", help="replace the live read model with the replay"
    )
    replay_cmd.add_argument("--var", default=var_default)

    events_cmd = commands.add_parser("events", help="print stored events")
    events_cmd.add_argument("--stream", help="one stream id, e.g. case-42")
    events_cmd.add_argument("--service", help="read this service's own store")
    events_cmd.add_argument("--limit", type=int, default=100)
    args = parser.parse_args(argv)
    if args.command == "audit":
        return _audit(args)
    if args.command == "replay":
        from civitas.replay import replay

        try:
            return asyncio.run(replay(args.projection, args.source, args.swap, Path(args.var)))
        except ValueError as refused:  # e.g. no such topic: nothing was swapped
            print(f"civitas replay: {refused}", file=sys.stderr)
            return 2
    if args.command == "forget":
        from civitas.privacy.commands import KEEPERS, forget

        args.role, args.scope, args.subject, args.ttl = ["district_admin"], ["QH"], "cli", 600
        addresses = {keeper: getattr(args, keeper) for keeper in KEEPERS}
        return asyncio.run(forget(args.person, addresses, args.token or _token(args)))
    if getattr(args, "service", None) and args.store is None:
        args.store = Locations.of(args.service).eventstore_url
    args.store = args.store or from_environment("eventstore_url", default=DEFAULT_EVENTSTORE_URL)

    with contextlib.suppress(KeyboardInterrupt):
        if args.command == "up":
            return asyncio.run(runner.up(Path(args.var), ready_within=args.ready_within))
        if args.command == "token":
            print(_token(args))
        elif args.command == "relay":
            asyncio.run(
                _relay(args.store, args.kafka, args.service, args.partitions, args.batch_size)
            )
        elif args.command == "call":
            print(asyncio.run(_call(args)))
        elif args.command == "demo":
            asyncio.run(_demo(args))
        elif args.command == "events":
            asyncio.run(_events(args.store, args.stream, args.limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
