"""``civitas up``: the platform on this machine."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from civitas import runner
from civitas.cli.options import Commands, positive_seconds, until_interrupted
from civitas.replicas import MAX_REPLICAS


def up(commands: Commands, var_default: str) -> None:
    command = commands.add_parser("up", help="run every service on this machine until Ctrl-C")
    command.add_argument(
        "--var", default=var_default, help="embedded stores (default: %(default)s)"
    )
    command.add_argument(
        "--ready-within",
        type=positive_seconds,
        default=30.0,
        help="seconds each service has to become healthy (default 30)",
    )
    command.add_argument(
        "--replicas",
        type=replica_count,
        default=1,
        help="processes of each service, balanced by their callers (default 1; more need "
        "PostgreSQL stores)",
    )
    command.add_argument(
        "--postgres",
        type=postgres_url,
        metavar="URL",
        help="keep every service's stores on this PostgreSQL server, each in its own schema",
    )
    command.add_argument(
        "--kafka", metavar="BOOTSTRAP", help="publish and consume events on this Kafka broker"
    )
    command.set_defaults(run=until_interrupted(_up))


def replica_count(text: str) -> int:
    """A ``--replicas`` argument: a whole number from 1 to MAX_REPLICAS."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_REPLICAS:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_REPLICAS}, not {text!r}")
    return int(text)


def postgres_url(text: str) -> str:
    """A ``--postgres`` argument: a PostgreSQL URL."""
    if not text.startswith(("postgresql://", "postgres://")):
        raise argparse.ArgumentTypeError(f"a postgresql://… URL, not {text!r}")
    return text


def _up(args: argparse.Namespace) -> int:
    return asyncio.run(
        runner.up(
            Path(args.var),
            ready_within=args.ready_within,
            replicas=args.replicas,
            postgres=args.postgres,
            kafka=args.kafka,
        )
    )
