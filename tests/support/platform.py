"""The platform as a user runs it: ``civitas up`` and the CLI as subprocesses, on free
ports, with their stores under the test's own folder."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-secret-" + "z" * 40


def _ports_outside_the_ephemeral_range() -> range:
    kernel = Path("/proc/sys/net/ipv4/ip_local_port_range")  # Linux; elsewhere IANA's
    low, high = map(int, kernel.read_text().split()) if kernel.exists() else (49_152, 65_535)
    if low > 11_000:
        return range(10_000, min(low, 32_768))
    if high < 64_000:
        return range(high + 1, 65_536)
    return range(10_000, 65_536)  # no room outside it: a race remains possible


_handed_out: set[int] = set()
_FREE_PORTS = _ports_outside_the_ephemeral_range()


def free_port() -> int:
    """A port nothing listens on now, for a server started later in another process.

    Not one the kernel would pick (its ephemeral range): there the outgoing connections
    of the services started meanwhile, to Kafka and to each other, take their local
    ports, and one could take this port before its server binds it. And never the same
    one twice in a run."""
    while True:
        port = random.choice(_FREE_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def service_env(tmp_path: Path, grpc_port: int, metrics_port: int) -> dict[str, str]:
    """Settings for every service on free ports (party_orgs on the two given), stores
    under ``tmp_path``."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CIVITAS_VAR_DIR": str(tmp_path / "var"),
        "CIVITAS_AUTH_SECRET": SECRET,
        "CIVITAS_PARTY_ORGS_GRPC_PORT": str(grpc_port),
        "CIVITAS_PARTY_ORGS_METRICS_PORT": str(metrics_port),
        "CIVITAS_CASES_GRPC_PORT": str(free_port()),
        "CIVITAS_CASES_METRICS_PORT": str(free_port()),
        "CIVITAS_VOLUNTEERS_GRPC_PORT": str(free_port()),
        "CIVITAS_VOLUNTEERS_METRICS_PORT": str(free_port()),
        "CIVITAS_FUNDS_GRPC_PORT": str(free_port()),
        "CIVITAS_FUNDS_METRICS_PORT": str(free_port()),
        "CIVITAS_INSIGHTS_GRPC_PORT": str(free_port()),
        "CIVITAS_INSIGHTS_METRICS_PORT": str(free_port()),
        "CIVITAS_INSIGHTS_HTTP_PORT": str(free_port()),
    }


def address_of(env: dict[str, str], service: str) -> str:
    return f"127.0.0.1:{env[f'CIVITAS_{service.upper()}_GRPC_PORT']}"


async def run_cli(
    args: list[str], secret: str, settings: Mapping[str, str] | None = None, answer: str = ""
) -> tuple[int, str]:
    """The civitas command line as a user types it, with the platform's token secret
    (and ``settings``, and ``answer`` typed when it asks): its exit code and what it
    printed, with the tail of what it complained of when it failed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CIVITAS_AUTH_SECRET": secret, **(settings or {})}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "civitas.cli",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(answer.encode())
    if process.returncode:
        return process.returncode, out.decode() + err.decode()[-3000:]
    return 0, out.decode()


async def cli(
    env: dict[str, str],
    cwd: Path,
    method: str,
    request: dict[str, str],
    address: str,
    token: str | None = None,
) -> dict[str, Any]:
    """``civitas call`` as a user types it; the JSON reply."""
    call = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "civitas.cli",
        "call",
        method,
        json.dumps(request, ensure_ascii=False),
        "--address",
        address,
        "--timeout",  # a projection on a busy machine may take longer than 5 s to catch up
        "30",
        *(["--token", token] if token else []),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(call.communicate(), 60)
    assert call.returncode == 0, f"{method} failed"
    reply: dict[str, Any] = json.loads(out)
    return reply


@dataclass
class Platform:
    """A running ``civitas up``: its settings, what it printed until ready, and (once it
    has stopped) what it printed after."""

    env: dict[str, str]
    printed: str
    after_stop: str = ""


@contextlib.asynccontextmanager
async def civitas_up(
    tmp_path: Path,
    settings: Mapping[str, str] | None = None,
    *,
    start_seconds: float = 60,
    stop_seconds: float = 30,
) -> AsyncIterator[Platform]:
    """``civitas up`` on free ports (and with ``settings``, other ``CIVITAS_`` variables)
    until every service is ready (each line within ``start_seconds``); Ctrl-C when
    done, and killed if it has not stopped within ``stop_seconds``."""
    env = {**service_env(tmp_path, free_port(), free_port()), **(settings or {})}
    up = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "civitas.cli",
        "up",
        "--ready-within",  # five services starting at once on a busy machine
        str(start_seconds),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert up.stdout is not None
    platform = Platform(env, "")
    try:
        while "Ctrl-C stops" not in platform.printed:
            # a little longer than civitas up gives the services, to hear what it says then
            line = await asyncio.wait_for(up.stdout.readline(), start_seconds + 15)
            assert line, f"civitas up ended early: {platform.printed}"
            platform.printed += line.decode()
        yield platform
    finally:
        if up.returncode is None:
            up.send_signal(signal.SIGINT)
        try:
            rest, _ = await asyncio.wait_for(up.communicate(), stop_seconds)
        except TimeoutError:
            os.killpg(up.pid, signal.SIGKILL)  # its session: it and every service it started
            await up.wait()
            raise
        platform.after_stop = rest.decode()


async def insights_caught_up(var: Path, seconds: float = 120) -> None:
    """Wait until each of insights' projections has applied, stream by stream, every
    event its source service's store (under ``var``) held when the wait began."""
    from civitas.eventkit import create_read_model_engine, open_event_store
    from civitas.replay import catalog, settings_of
    from tests.support.processes import last_versions, streams_applied

    wanted: dict[str, dict[str, int]] = {}
    for name, spec in catalog().items():
        if spec.owner == "insights":
            store = await open_event_store(settings_of(spec.source, var).eventstore_url)
            try:
                wanted[name] = await last_versions(store, spec.build().filter)
            finally:
                await store.close()
    engine = create_read_model_engine(settings_of("insights", var).read_model_url)
    try:
        await streams_applied(engine, wanted, "insights to catch up with every service", seconds)
    finally:
        engine.dispose()
