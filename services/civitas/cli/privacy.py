"""``civitas forget``: erase a person from every service that keeps personal data."""

from __future__ import annotations

import argparse
import asyncio

from civitas import catalog
from civitas.cli.options import Commands, address_of
from civitas.cli.tokens import district_admin


def forget(commands: Commands, var_default: str) -> None:
    command = commands.add_parser(
        "forget", help="erase a person: delete their key in every service's vault"
    )
    command.add_argument("person", help="person id: resident-…, volunteer-… or a member id")
    for keeper in catalog.personal_data_keepers():
        command.add_argument(
            f"--{keeper.replace('_', '-')}", dest=keeper, default=address_of(keeper)
        )
    command.add_argument("--token", help="bearer token (default: a district admin's)")
    command.add_argument("--var", default=var_default)
    command.set_defaults(run=_forget)


def _forget(args: argparse.Namespace) -> int:
    from civitas.privacy.commands import KEEPERS, forget

    addresses = {keeper: getattr(args, keeper) for keeper in KEEPERS}
    token = args.token or district_admin(args.var, "cli", 600)
    return asyncio.run(forget(args.person, addresses, token))
