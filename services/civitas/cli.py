"""The ``civitas`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from civitas.eventkit import open_event_store, setting
from civitas.eventkit.config import DEFAULT_EVENTSTORE_URL


async def _up(url: str) -> None:
    store = await open_event_store(url)
    try:
        head = await store.head_position()
        print(f"civitas: event store {url} holds {head} events", flush=True)
        print(
            "civitas: no services are built yet (they arrive with the service issues); "
            "following the event store. Ctrl-C stops.",
            flush=True,
        )
        async for batch in store.subscribe(after=head):
            for event in batch:
                print(f"{event.position:>8} {event.stream_id} {event.type}", flush=True)
    finally:
        await store.close()


async def _relay(url: str, bootstrap: str, service: str, partitions: int, batch_size: int) -> None:
    from civitas.eventkit.kafka import Relay, TopicSpec, events_topic

    store = await open_event_store(url)
    topic = TopicSpec(events_topic(service), partitions=partitions)
    print(f"civitas: relaying {url} to {topic.name} on {bootstrap}", flush=True)
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
    """Entry point of the ``civitas`` command."""
    parser = argparse.ArgumentParser(prog="civitas", description=__doc__)
    parser.add_argument(
        "--store",
        default=setting("eventstore_url", default=DEFAULT_EVENTSTORE_URL),
        help="event store URL (default: $CIVITAS_EVENTSTORE_URL or %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="run the platform on this machine until Ctrl-C")
    events = commands.add_parser("events", help="print stored events")
    events.add_argument("--stream", help="one stream id, e.g. case-42")
    events.add_argument("--limit", type=int, default=100)
    relay = commands.add_parser("relay", help="publish a service's events to its Kafka topic")
    relay.add_argument("--service", required=True, help="service name, e.g. cases")
    relay.add_argument(
        "--kafka",
        default=setting("kafka_bootstrap", default="127.0.0.1:9092"),
        help="bootstrap servers (default: $CIVITAS_KAFKA_BOOTSTRAP or %(default)s)",
    )
    relay.add_argument("--partitions", type=int, default=6)
    relay.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args(argv)

    with contextlib.suppress(KeyboardInterrupt):
        if args.command == "up":
            asyncio.run(_up(args.store))
        elif args.command == "relay":
            asyncio.run(
                _relay(args.store, args.kafka, args.service, args.partitions, args.batch_size)
            )
        elif args.command == "events":
            asyncio.run(_events(args.store, args.stream, args.limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
