"""``civitas kafka delete-topics``: clear a namespace's topics, after asking;
``civitas kafka acls``: what each service's principal may do, shown or applied."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from civitas.chassis.kafka_access import platform_grants, strimzi_acls
from civitas.chassis.settings import from_environment, kafka_security
from civitas.cli.options import Commands, confirmed, kafka_namespace
from civitas.eventkit.kafka.acls import create_acls
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
    _acls_command(actions)


def _acls_command(actions: Commands) -> None:
    acls = actions.add_parser(
        "acls",
        help="each service's Kafka ACLs, from the catalog (printed, or applied)",
        description="Print, as JSON by principal (civitas-<service>) in the shape of a "
        "Strimzi KafkaUser's spec.authorization.acls, what each service may do in a "
        "namespace: write its own topics, read the topics it consumes, use its consumer "
        "groups. With --apply, create them on the broker, as the principal the "
        "CIVITAS_KAFKA_* settings name (a super user).",
    )
    acls.add_argument("--namespace", default="civitas", type=kafka_namespace)
    acls.add_argument(
        "--kafka",
        default=from_environment("kafka_bootstrap", default="127.0.0.1:9092"),
        help="bootstrap servers, for --apply (default: $CIVITAS_KAFKA_BOOTSTRAP or %(default)s)",
    )
    shown = acls.add_mutually_exclusive_group()
    shown.add_argument("--apply", action="store_true", help="create them on the broker")
    shown.add_argument("--principals", action="store_true", help="list the principals only")
    acls.set_defaults(run=_acls)


def _delete_topics(args: argparse.Namespace) -> int:
    security = kafka_security(None)
    topics = asyncio.run(namespace_topics(args.kafka, args.namespace, security))
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
    asyncio.run(delete_topics(args.kafka, topics, security))
    print(f"civitas: {len(topics)} deleted")
    return 0


def _acls(args: argparse.Namespace) -> int:
    granted = platform_grants(args.namespace)
    if args.principals:
        print("\n".join(granted))
    elif args.apply:
        created = asyncio.run(create_acls(args.kafka, granted, kafka_security(None)))
        print(f"civitas: {created} ACLs for {len(granted)} principals on {args.kafka}")
    else:
        print(json.dumps({who: strimzi_acls(grants) for who, grants in granted.items()}, indent=2))
    return 0
