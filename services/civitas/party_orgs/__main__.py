"""Run party_orgs as a process: ``python -m civitas.party_orgs``."""

from __future__ import annotations

import asyncio

from civitas.chassis.logs import configure_logging
from civitas.chassis.server import serve_until_stopped, start_metrics_server
from civitas.chassis.settings import ServiceSettings

from .bootstrap import run_party_orgs


async def main() -> None:
    settings = ServiceSettings.from_env("party_orgs")
    configure_logging("party_orgs")
    start_metrics_server(settings.host, settings.metrics_port)
    async with run_party_orgs(settings) as running:
        print(f"party_orgs ready on {settings.host}:{running.server.port}", flush=True)
        await serve_until_stopped(running.server)


if __name__ == "__main__":
    asyncio.run(main())
