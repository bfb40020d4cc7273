"""``civitas relay`` and ``civitas events``: a service's event store, published or printed."""

from __future__ import annotations

import argparse
import asyncio

from civitas import catalog
from civitas.chassis.logs import redact_text
from civitas.chassis.settings import Locations, from_environment, kafka_security
from civitas.cli.options import Commands, kafka_namespace, until_interrupted
from civitas.eventkit import open_event_store
from civitas.eventkit.config import DEFAULT_EVENTSTORE_URL


def relay(commands: Commands, var_default: str) -> None:
    command = commands.add_parser("relay", help="publish a service's events to its topic")
    command.add_argument(
        "--service",
        required=True,
        choices=catalog.event_keepers(),
        help="its own store, unless --store names another; its topic as the catalog declares it",
    )
    command.add_argument(
        "--kafka",
        default=from_environment("kafka_bootstrap", default="127.0.0.1:9092"),
        help="bootstrap servers (default: $CIVITAS_KAFKA_BOOTSTRAP or %(default)s)",
    )
    command.add_argument(
        "--namespace",
        type=kafka_namespace,
        default=from_environment("kafka_namespace", default="civitas"),
        help="of the topic (default: $CIVITAS_KAFKA_NAMESPACE or %(default)s)",
    )
    command.add_argument("--batch-size", type=int, default=1000)
    command.set_defaults(run=until_interrupted(_relay))


def events(commands: Commands, var_default: str) -> None:
    command = commands.add_parser("events", help="print stored events")
    command.add_argument("--stream", help="one stream id, e.g. case-42")
    command.add_argument("--service", help="read this service's own store")
    command.add_argument("--limit", type=int, default=100)
    command.set_defaults(run=until_interrupted(_events))


def _store_url(args: argparse.Namespace) -> str:
    """``--store``, else the ``--service``'s own store, else the shared one."""
    if args.service and args.store is None:
        return Locations.of(args.service).eventstore_url
    return args.store or from_environment("eventstore_url") or DEFAULT_EVENTSTORE_URL


def _relay(args: argparse.Namespace) -> int:
    asyncio.run(_publish(args))
    return 0


async def _publish(args: argparse.Namespace) -> None:
    from civitas.chassis.topics import events_spec
    from civitas.eventkit.kafka import Relay

    url, bootstrap = _store_url(args), args.kafka
    store = await open_event_store(url)
    topic = events_spec(args.service, args.namespace)
    print(f"civitas: relaying {redact_text(url)} to {topic.name} on {bootstrap}", flush=True)
    try:
        security = kafka_security(args.service)  # its own principal, unless set otherwise
        await Relay(store, bootstrap, topic, batch_size=args.batch_size, security=security).run()
    finally:
        await store.close()


def _events(args: argparse.Namespace) -> int:
    asyncio.run(_print_events(_store_url(args), args.stream, args.limit))
    return 0


async def _print_events(url: str, stream: str | None, limit: int) -> None:
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
