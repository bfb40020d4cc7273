"""``civitas replay``: rebuild a read model beside the live one."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from civitas.cli.options import Commands


def replay(commands: Commands, var_default: str) -> None:
    command = commands.add_parser(
        "replay", help="rebuild a read model beside the live one, compare, swap on request"
    )
    command.add_argument("projection", help="e.g. insights_cases, funds_ledger, cases_index")
    command.add_argument("--source", choices=["store", "kafka"], default="store")
    command.add_argument(
        "--swap", action="store_true", help="replace the live read model with the replay"
    )
    command.add_argument("--var", default=var_default)
    command.set_defaults(run=_replay)


def _replay(args: argparse.Namespace) -> int:
    from civitas.replay import replay

    try:
        return asyncio.run(replay(args.projection, args.source, args.swap, Path(args.var)))
    except ValueError as refused:  # e.g. no such topic: nothing was swapped
        print(f"civitas replay: {refused}", file=sys.stderr)
        return 2
