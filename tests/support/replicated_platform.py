"""``civitas up --replicas N`` as a user runs it, for e2e tests: a fresh PostgreSQL
database of its own, ports free for every replica, and what it prints read as it
comes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from civitas import catalog
from civitas.replicas import PORT_STEP
from tests.conftest import POSTGRES_URL
from tests.support.platform import ROOT, SECRET, free_port


async def _admin_sql(sql: str) -> None:
    """SQL run by the server's superuser, as ``scripts/postgres-up.sh`` runs it (the
    test role may not create databases)."""
    psql = f"psql -v ON_ERROR_STOP=1 -qtA -c {shlex.quote(sql)}"
    command = ["su", "postgres", "-c", psql] if os.geteuid() == 0 else ["sh", "-c", psql]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"{sql!r} failed: {out.decode()[-1000:]}")


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The URL of a new, empty database on the test server, owned by the test role;
    dropped afterwards (with whatever still holds connections to it)."""
    name = f"civitas_e2e_{uuid.uuid4().hex[:10]}"
    await _admin_sql(f"CREATE DATABASE {name} OWNER civitas")
    try:
        yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        await _admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _free_with_replicas(replicas: int) -> int:
    """A free port whose replicas' ports (``+ PORT_STEP`` each) are free too."""
    while True:
        port = free_port()
        with contextlib.ExitStack() as probes:
            try:
                for k in range(1, replicas):
                    probe = probes.enter_context(socket.socket())
                    probe.bind(("127.0.0.1", port + k * PORT_STEP))
            except OSError:
                continue
            return port


def replicated_env(replicas: int, var: str) -> dict[str, str]:
    """Settings for every service's replicas on free ports, stores under ``var``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CIVITAS_VAR_DIR": var,
        "CIVITAS_AUTH_SECRET": SECRET,
        "CIVITAS_KAFKA_NAMESPACE": f"e2e-{uuid.uuid4().hex[:8]}",
    }
    for spec in catalog.SERVICES:
        ports = ["grpc_port", "metrics_port"] + (["http_port"] if spec.http_port else [])
        for name in ports:
            env[f"CIVITAS_{spec.name.upper()}_{name.upper()}"] = str(_free_with_replicas(replicas))
    return env


@dataclass
class Output:
    """What a running ``civitas up`` has printed, read line by line as it comes."""

    stream: asyncio.StreamReader
    printed: list[str] = field(default_factory=list)

    async def until(self, pattern: str, seconds: float) -> re.Match[str]:
        """The first line (printed so far or next) that matches ``pattern``; fails after
        ``seconds``, or when the output ends, with what was printed."""
        for line in self.printed:
            if found := re.search(pattern, line):
                return found
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while line := (await self.stream.readline()).decode():
                    self.printed.append(line)
                    if found := re.search(pattern, line):
                        return found
        raise AssertionError(f"no {pattern!r} within {seconds}s in: {''.join(self.printed)}")
