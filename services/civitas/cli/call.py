"""``civitas call``: one RPC of a service, its request and reply as JSON."""

from __future__ import annotations

import argparse
import asyncio
import math

from civitas import catalog
from civitas.chassis.auth import MAX_TOKEN_SECONDS
from civitas.cli.options import Commands, address_of, positive_seconds, until_interrupted
from civitas.cli.tokens import district_admin


def call(commands: Commands, var_default: str) -> None:
    command = commands.add_parser(
        "call", help='call an RPC: civitas call party_orgs.GetAdminUnit \'{"code":"QH"}\''
    )
    command.add_argument("method", help="SERVICE.Method, e.g. party_orgs.ResolveGrid")
    command.add_argument("request", nargs="?", default="{}", help="the request as JSON")
    command.add_argument(
        "--address",
        help="host:port, or every replica: ipv4:host:port,host:port or dns:///name:port "
        "(default: $CIVITAS_<SERVICE>_ADDRESS, else the service's local port)",
    )
    command.add_argument("--token", help="bearer token (default: a district admin's)")
    command.add_argument(
        "--timeout", type=positive_seconds, default=5.0, help="deadline in seconds (default 5)"
    )
    command.add_argument("--var", default=var_default)
    command.set_defaults(run=until_interrupted(_call))


def _call(args: argparse.Namespace) -> int:
    from civitas.call import call as call_rpc

    # without --token, a district admin's, living as long as the call may take
    ttl = min(MAX_TOKEN_SECONDS, max(600, math.ceil(args.timeout) + 60))
    token = args.token or district_admin(args.var, "cli", ttl)
    service = args.method.partition(".")[0]  # call_rpc names the services when unknown
    address = args.address or (address_of(service) if service in catalog.names() else None)
    print(asyncio.run(call_rpc(args.method, args.request, token, address, args.timeout)))
    return 0
