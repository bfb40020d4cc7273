"""``civitas kafka delete-topics``: clear a namespace's topics, after asking."""

from __future__ import annotations

import argparse
import asyncio
import sys

from civitas.chassis.settings import from_environment
from civitas.cli.options import Commands, confirmed, kafka_namespace
from civitas.eventkit.kafka.topics import delete_topics, namespace_topics


def kafka(commands: Commands, var_default: str) -> None:
    command = commands.add_parser("kafka", help="the platform's Kafka topics")
    actions = command.add_subparsers(dest="action", required=True)
    delete = actions.add_parser(
        "delete-topics",
        help="delete every topic of a namespace (lists them and asks first)",
        description="Delete every topic of a namespace and every message in it: after "
        "the event stores were reset, so that their relays start the topics afresh. It "
        "lists the topics and asks before deleting anything.",
    )
    delete.add_argument(
        "--namespace", required=True, type=kafka_namespace, help="e.g. civitas (the default)"
    )
    delete.add_argument(
        "--kafka",
        default=from_environment("kafka_bootstrap", default="127.0.0.1:9092"),
        help="bootstrap servers (default: $CIVITAS_KAFKA_BOOTSTRAP or %(default)s)",
    )
    delete.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    delete.set_defaults(run=_delete_topics)


def _delete_topics(args: argparse.Namespace) -> int:
    topics = asyncio.run(namespace_topics(args.kafka, args.namespace))
    if not topics:
        print(f"civitas: no topics in namespace {args.namespace} on {args.kafka}")
        return 0
    print(f"civitas: {len(topics)} topics of namespace {args.namespace} on {args.kafka}:")
    for topic in topics:
        print(f"  {topic}")
    if not args.yes and not confirmed(
        f"Delete these {len(topics)} topics and every message in them"
    ):
        print("civitas: nothing deleted", file=sys.stderr)
        return 1
    asyncio.run(delete_topics(args.kafka, topics))
    print(f"civitas: {len(topics)} deleted")
    return 0
