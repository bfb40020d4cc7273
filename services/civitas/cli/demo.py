"""``civitas demo``: the seed's district loaded into running services, one loader each."""

from __future__ import annotations

import argparse
import asyncio
import time

from civitas.cli.options import Commands, address_of, until_interrupted
from civitas.cli.tokens import district_admin


def demo(commands: Commands, var_default: str) -> None:
    command = commands.add_parser("demo", help="load the seed's district into running services")
    command.add_argument("--party-orgs", default=address_of("party_orgs"))
    command.add_argument("--members", type=int, default=6000)
    command.add_argument("--cases-address", default=address_of("cases"))
    command.add_argument("--requests", type=int, default=6029)
    command.add_argument("--volunteers-address", default=address_of("volunteers"))
    command.add_argument("--activities", type=int, default=1000)
    command.add_argument("--funds-address", default=address_of("funds"))
    command.add_argument("--expenditures", type=int, default=500)
    command.add_argument("--var", default=var_default)
    command.set_defaults(run=until_interrupted(_demo))


def _demo(args: argparse.Namespace) -> int:
    asyncio.run(_load(args))
    return 0


async def _load(args: argparse.Namespace) -> None:
    from civitas.demo import (
        load_case_funding,
        load_cases,
        load_funds,
        load_party_orgs,
        load_volunteers,
    )

    token = district_admin(args.var, "demo", 3600)
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
    approver = district_admin(args.var, "demo-approver", 3600)  # approves others' requests
    if not await load_funds(args.funds_address, token, approver, args.expenditures):
        print("  loaded already; left as it is")
    print("civitas demo: cases asking the community fund for money (the saga)")
    if not await load_case_funding(args.cases_address, args.funds_address, token, approver):
        print("  loaded already; left as it is")
    print(f"civitas demo: done in {time.perf_counter() - started:.0f}s")
