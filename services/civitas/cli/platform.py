"""``civitas up``: the platform on this machine."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from civitas import runner
from civitas.cli.options import Commands, positive_seconds, until_interrupted


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
    command.set_defaults(run=until_interrupted(_up))


def _up(args: argparse.Namespace) -> int:
    return asyncio.run(runner.up(Path(args.var), ready_within=args.ready_within))
