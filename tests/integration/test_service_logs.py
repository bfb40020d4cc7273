"""A service as a real process writes no secret to its logs: not the password of its
PostgreSQL URL when it starts, nor of a URL it cannot use when it fails."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url

from tests.conftest import POSTGRES_URL, drop_schema, missing_dependency, postgres_reachable
from tests.support.platform import ROOT, SECRET, free_port

pytestmark = pytest.mark.slow


def party_orgs_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    outside = {k: v for k, v in os.environ.items() if not k.startswith("CIVITAS_")}
    return {
        **outside,
        "PYTHONPATH": str(ROOT),
        "CIVITAS_VAR_DIR": str(tmp_path / "var"),
        "CIVITAS_AUTH_SECRET": SECRET,
        "CIVITAS_PARTY_ORGS_GRPC_PORT": str(free_port()),
        "CIVITAS_PARTY_ORGS_METRICS_PORT": str(free_port()),
        **settings,
    }


async def run_party_orgs_process(env: dict[str, str]) -> tuple[int, str, str]:
    """``python -m civitas.party_orgs``: stopped with SIGTERM once ready (or left to end
    on its own); its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "civitas.party_orgs",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    out = b""
    while b"ready on" not in out:
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if not line:
            break
        out += line
    if process.returncode is None and b"ready on" in out:
        process.send_signal(signal.SIGTERM)
    rest, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, (out + rest).decode(), err.decode()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.postgres
async def test_a_service_on_postgresql_logs_its_store_without_the_password(
    tmp_path: Path,
) -> None:
    if not await postgres_reachable():
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}")
    url = make_url(POSTGRES_URL)
    credentials = f"{url.username}:{url.password}@"
    schema = f"logs_{uuid.uuid4().hex[:12]}"
    store = f"{POSTGRES_URL}?schema={schema}"
    env = party_orgs_env(
        tmp_path,
        CIVITAS_EVENTSTORE_URL=store,
        CIVITAS_READ_MODEL_URL=f"{POSTGRES_URL}?schema={schema}_read",
    )
    try:
        code, out, err = await run_party_orgs_process(env)
    finally:
        await drop_schema(schema)
        await drop_schema(f"{schema}_read")

    assert code == 0, err
    assert credentials not in out + err
    listening = [line for line in json_lines(err) if line["event"] == "party_orgs listening"]
    assert [line["store"] for line in listening] == [store.replace(f":{url.password}@", ":***@")]


async def test_a_service_that_cannot_use_its_store_url_logs_why_without_the_password(
    tmp_path: Path,
) -> None:
    env = party_orgs_env(tmp_path, CIVITAS_EVENTSTORE_URL="mysql://civitas:N0t-f0r-logs@db/x")

    code, out, err = await run_party_orgs_process(env)

    assert code == 1
    assert "N0t-f0r-logs" not in out + err
    [failed] = [line for line in json_lines(err) if line["event"] == "service stopped on an error"]
    assert "mysql://civitas:***@db/x" in failed["exception"]
    assert failed["service"] == "party_orgs"
