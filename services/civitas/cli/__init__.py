"""The ``civitas`` command line."""

from __future__ import annotations

import argparse
import os
import sys

from civitas.chassis.logs import configure_logging
from civitas.chassis.settings import UnsafeSecretFile, from_environment
from civitas.cli import audit, call, demo, dlq, kafka, platform, privacy, replay, stores, tokens
from civitas.cli.options import Register
from civitas.eventkit.config import DEFAULT_EVENTSTORE_URL

COMMANDS: tuple[Register, ...] = (  # in the order `civitas --help` lists them
    platform.up,
    tokens.token,
    stores.relay,
    demo.demo,
    call.call,
    audit.audit,
    privacy.forget,
    replay.replay,
    dlq.dlq,
    stores.events,
    kafka.kafka,
)


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
    var_default = from_environment("var_dir") or "var"
    commands = parser.add_subparsers(dest="command", required=True)
    for register in COMMANDS:
        register(commands, var_default)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code
