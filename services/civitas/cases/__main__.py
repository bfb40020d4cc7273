"""Run cases as a process: ``python -m civitas.cases``."""

from __future__ import annotations

import asyncio

from civitas.chassis.logs import configure_logging
from civitas.chassis.server import serve_until_stopped, start_metrics_server
from civitas.chassis.settings import ServiceSettings

from .bootstrap import run_cases


async def main() -> None:
    settings = ServiceSettings.from_env("cases")
    configure_logging("cases")
    start_metrics_server(settings.host, settings.metrics_port)
    async with run_cases(settings) as running:
        print(f"cases ready on {settings.host}:{running.server.port}", flush=True)
        await serve_until_stopped(running.server)


if __name__ == "__main__":
    asyncio.run(main())
