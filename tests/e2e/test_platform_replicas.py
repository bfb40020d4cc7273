"""``civitas up --replicas 2 --postgres URL --kafka BOOTSTRAP``: every service twice, as
processes of their own on one fresh database and a real broker; a replica killed is
started again while calls through the other go on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from civitas import catalog
from civitas.runner import wait_healthy
from tests.conftest import missing_dependency, postgres_reachable
from tests.support.platform import run_cli
from tests.support.replicated_platform import Output, fresh_database, replicated_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.kafka, pytest.mark.timeout(600)]

READY = 240.0  # ten processes starting at once: 100 s and more here under a load of 28-44


async def test_replicas_serve_together_and_one_killed_is_restarted_while_calls_go_on(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    if not await postgres_reachable():
        missing_dependency("PostgreSQL")
    env = replicated_env(2, str(tmp_path / "var"))
    async with fresh_database() as url:
        up = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "civitas.cli", "up", "--replicas", "2"),
            *("--postgres", url, "--kafka", kafka_bootstrap, "--ready-within", str(READY)),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert up.stdout is not None
        output = Output(up.stdout)
        try:
            await output.until("Ctrl-C stops everything", READY + 15)
            target = (await output.until(r"^  party_orgs +(ipv4:\S+)$", 1)).group(1)
            killed = await output.until(r"^  party_orgs#1 +grpc (\S+) .* pid (\d+)$", 1)
            addresses = [
                (await output.until(rf"^  {service}#{k} +grpc (\S+)", 1)).group(1)
                for service in catalog.names()
                for k in (0, 1)
            ]
            for address in addresses:  # every replica ready
                await wait_healthy(address, 60)

            async def call(method: str, request: dict[str, Any]) -> dict[str, Any]:
                code, said = await run_cli(
                    ["call", method, json.dumps(request), "--address", target, "--timeout", "10"],
                    env["CIVITAS_AUTH_SECRET"],
                    env,
                )
                assert code == 0, said
                reply: dict[str, Any] = json.loads(said)
                return reply

            registered = await call(
                "party_orgs.RegisterAdminUnit", {"code": "QH", "name": "秦淮区"}
            )
            os.kill(int(killed.group(2)), signal.SIGKILL)
            meanwhile = [await call("party_orgs.GetAdminUnit", {"code": "QH"}) for _ in range(3)]
            restarted = await output.until(
                r"party_orgs#1 restarted \(exit code (-?\d+), restart (\d+)\)", 30
            )
            await wait_healthy(killed.group(1), 30)
            after = await call(
                "party_orgs.RegisterAdminUnit",
                {"code": "QH-01", "name": "大光路街道"},
            )
        finally:
            if up.returncode is None:
                up.send_signal(signal.SIGINT)
            rest, _ = await asyncio.wait_for(up.communicate(), 60)

    assert registered["unit"]["code"] == "QH"
    assert [reply["unit"]["name"] for reply in meanwhile] == ["秦淮区"] * 3
    assert restarted.groups() == ("-9", "1")
    assert after["unit"]["code"] == "QH-01"
    assert "all services stopped (restarts: party_orgs#1 1)" in rest.decode()
    assert up.returncode == 0
