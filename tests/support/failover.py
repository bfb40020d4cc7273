"""The failover harness's parts: a PostgreSQL server and a Kafka broker of its own (the
rest of the suite shares the ones on 5432 and 9092, which a fault test must never
kill), and every service as replica processes on them, each killable alone.

Replicas are started here as processes (``python -m civitas.<service>``), one at a
time and each once healthy, so that the harness does not depend on how ``civitas up``
starts them; a killed replica is started again on the same ports, as a supervisor
would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from civitas import catalog
from civitas.runner import wait_healthy
from tests.conftest import kafka_reachable
from tests.support.platform import ROOT, SECRET, free_port
from tests.support.processes import eventually

NAMESPACE = "failover"
HELD = re.compile(r"^civitas_lease_held\{work=\"[^\"]+\"\} 1\.0$")
APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server's programs on this machine, if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts)
    return found[-1].parent if found else None


async def _run(*args: str, as_postgres: bool = False) -> str:
    """Run a command (as the postgres account when root, which initdb refuses to be);
    its output, or an error with what it said."""
    if as_postgres and os.geteuid() == 0:
        args = ("su", "postgres", "-c", shlex.join(args))
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"{args[0]} failed ({process.returncode}): {out.decode()[-2000:]}")
    return out.decode()


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster in a folder of its own, on its own port; ``crash`` stops it
    at once (no checkpoint: the next start recovers from the WAL, as after a crash)."""

    folder: Path
    programs: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"postgresql://civitas:civitas@127.0.0.1:{self.port}/civitas"

    async def create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            await _run("chown", "postgres", str(self.folder))
        initdb = str(self.programs / "initdb")
        await _run(
            initdb,
            "-D",
            str(self.folder / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            as_postgres=True,
        )
        await self.start()
        for sql in (
            "CREATE ROLE civitas LOGIN PASSWORD 'civitas'",
            "CREATE DATABASE civitas OWNER civitas",
        ):
            await self._psql(sql)

    async def _psql(self, sql: str) -> None:
        psql = str(self.programs / "psql")
        await _run(
            psql,
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
            as_postgres=True,
        )

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        await _run(
            str(self.programs / "pg_ctl"),
            "-D",
            str(self.folder / "data"),
            "-o",
            options,
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "start",
            as_postgres=True,
        )

    async def crash(self) -> None:
        await self._stop("immediate")

    async def stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # not running: nothing to stop
            await self._stop("fast")

    async def _stop(self, mode: str) -> None:
        await _run(
            str(self.programs / "pg_ctl"),
            "-D",
            str(self.folder / "data"),
            "-m",
            mode,
            "-w",
            "stop",
            as_postgres=True,
        )


@dataclass
class PrivateKafka:
    """A KRaft broker of its own: started first by ``scripts/kafka-up.sh`` on other
    ports and another home (sharing the jars ``make kafka-up`` fetched), then, after a
    ``crash`` (SIGKILL), by the very command line the script ran, on the same data."""

    home: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    command: list[str] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, within: float = 180) -> None:
        """Start the broker and wait until it answers (``within`` seconds: a broker
        reloading its groups on a busy machine takes longer than the script waits)."""
        if self.command:
            log = os.open(self.home / "logs" / "stdout.log", APPEND, 0o600)
            try:
                self.process = await asyncio.create_subprocess_exec(
                    *self.command, cwd=ROOT, stdout=log, stderr=log
                )
            finally:
                os.close(log)
        else:
            await self._first_start()
        await eventually(
            lambda: asyncio.to_thread(kafka_reachable, self.bootstrap),
            "the broker",
            within,
            poll=0.5,
        )

    async def _first_start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        shared = ROOT / ".kafka" / "libs"
        if shared.is_dir() and not (self.home / "libs").exists():
            (self.home / "libs").symlink_to(shared)
        settings = {
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_HOME": str(self.home),
            "KAFKA_HEAP": "384m",
            "KAFKA_AUTH": "plaintext",
        }
        process = await asyncio.create_subprocess_exec(
            "bash",
            str(ROOT / "scripts" / "kafka-up.sh"),
            cwd=ROOT,
            env={**os.environ, **settings, "PYTHON": sys.executable},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        if process.returncode:
            raise RuntimeError(f"the private broker did not start: {out.decode()[-2000:]}")
        self.command = await asyncio.to_thread(_command_line, self.home / "kafka.pid")

    def pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int((self.home / "kafka.pid").read_text())
        return None

    async def crash(self) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self.process is not None:
                await self.process.wait()
            await eventually(lambda: asyncio.to_thread(_gone, pid), f"broker {pid} to die", 30)

    stop = crash  # its data is thrown away with the folder


def _command_line(pidfile: Path) -> list[str]:
    """The command line of the process whose pid ``pidfile`` holds."""
    pid = int(pidfile.read_text())
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with contextlib.suppress(FileNotFoundError):  # a zombie is dead
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    return True


@dataclass
class Replica:
    """One process of a service, on ports of its own."""

    service: str
    index: int
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Replicas:
    """Every service of the catalog, ``count`` processes each, on one PostgreSQL server
    (each service its own schemas: events, read models, vault) and one Kafka broker.
    A service reaches another's replicas by a list target (``ipv4:a,b``)."""

    def __init__(self, folder: Path, postgres_url: str, bootstrap: str, count: int = 2) -> None:
        self.folder = folder
        self.postgres_url = postgres_url
        self.bootstrap = bootstrap
        self.replicas = {name: [Replica(name, i) for i in range(count)] for name in catalog.names()}
        (folder / "logs").mkdir(parents=True, exist_ok=True)

    def target(self, service: str) -> str:
        """Every replica of ``service``, as a gRPC target."""
        return "ipv4:" + ",".join(r.address for r in self.replicas[service])

    def settings(self) -> dict[str, str]:
        """The ``CIVITAS_`` settings every replica shares, and a tool needs to find the
        services' stores (``civitas replay``)."""
        env = {
            "PYTHONPATH": str(ROOT),
            "CIVITAS_VAR_DIR": str(self.folder / "var"),
            "CIVITAS_AUTH_SECRET": SECRET,
            "CIVITAS_EVENTSTORE_URL": self.postgres_url,  # each service's own schema
            "CIVITAS_KAFKA_BOOTSTRAP": self.bootstrap,
            "CIVITAS_KAFKA_NAMESPACE": NAMESPACE,
        }
        for service in self.replicas:
            env[f"CIVITAS_{service.upper()}_ADDRESS"] = self.target(service)
            env[f"CIVITAS_{service.upper()}_READ_MODEL_URL"] = self.schema(service, "read")
            env[f"CIVITAS_{service.upper()}_VAULT_URL"] = self.schema(service, "vault")
        return env

    def schema(self, service: str, kind: str) -> str:
        return f"{self.postgres_url}?schema={service}_{kind}"

    def environment(self, replica: Replica) -> dict[str, str]:
        own = f"CIVITAS_{replica.service.upper()}_"
        return {
            **os.environ,
            **self.settings(),
            f"{own}GRPC_PORT": str(replica.grpc_port),
            f"{own}METRICS_PORT": str(replica.metrics_port),
            f"{own}HTTP_PORT": str(replica.http_port),
        }

    def all(self) -> list[Replica]:
        return [r for replicas in self.replicas.values() for r in replicas]

    async def start(self, replica: Replica, within: float = 120) -> None:
        """Start ``replica`` (its output appended to logs/<name>.log) and wait until it
        is healthy."""
        log = os.open(self.folder / "logs" / f"{replica.name}.log", APPEND, 0o600)
        try:
            replica.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                catalog.spec(replica.service).module,
                env=self.environment(replica),
                stdout=log,
                stderr=log,
            )
        finally:
            os.close(log)
        await wait_healthy(replica.address, within, replica.name)

    async def start_all(self) -> None:
        """Replica 0 of every service in the catalog's order, one at a time, each once the
        one before is healthy (so that schemas are made by one process); then the others
        all at once."""
        for replicas in self.replicas.values():
            await self.start(replicas[0])
        await asyncio.gather(*(self.start(r) for r in self.all() if r.index > 0))

    async def kill(self, replica: Replica) -> None:
        """SIGKILL: no goodbye, no lease given back, no buffer flushed."""
        if replica.process is not None and replica.process.returncode is None:
            replica.process.kill()
            await replica.process.wait()

    async def lease_holders(self) -> dict[str, Replica]:
        """For each service, the replica holding most of its leases (its relay,
        projections on its store, supervisor, anchoring), by each replica's
        ``civitas_lease_held`` gauges."""
        held = await asyncio.gather(*(asyncio.to_thread(_leases_held, r) for r in self.all()))
        holders: dict[str, Replica] = {}
        for count, replica in sorted(zip(held, self.all(), strict=True), key=lambda h: -h[0]):
            if count:
                holders.setdefault(replica.service, replica)
        return holders

    async def stop(self, replica: Replica, within: float = 20) -> None:
        """SIGTERM, as an orderly shutdown; SIGKILL after ``within`` seconds."""
        if replica.running:
            assert replica.process is not None
            replica.process.terminate()
            try:
                await asyncio.wait_for(replica.process.wait(), within)
            except TimeoutError:
                await self.kill(replica)

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(r) for r in self.all()))


def _leases_held(replica: Replica) -> int:
    """How many leases a running replica says it holds (0 when it does not answer)."""
    url = f"http://127.0.0.1:{replica.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if HELD.match(line))


@contextlib.asynccontextmanager
async def failover_platform(folder: Path, count: int = 2) -> AsyncIterator[FailoverPlatform]:
    """A private PostgreSQL and Kafka, and ``count`` replicas of every service on them;
    everything stopped (and the broker killed) on the way out."""
    programs = postgres_bin()
    assert programs is not None, "no PostgreSQL server programs under /usr/lib/postgresql"
    # not under ``folder``: the postgres account must reach it, and a test's folder is
    # its owner's alone
    postgres = PrivatePostgres(Path(tempfile.mkdtemp(prefix="civitas-failover-pg-")), programs)
    kafka = PrivateKafka(folder / "kafka")
    replicas: Replicas | None = None
    try:
        await postgres.create()
        await kafka.start()
        replicas = Replicas(folder, postgres.url, kafka.bootstrap, count)
        await replicas.start_all()
        yield FailoverPlatform(postgres, kafka, replicas)
    finally:
        if replicas is not None:
            await replicas.stop_all()
        await kafka.stop()
        await postgres.stop()
        shutil.rmtree(postgres.folder, ignore_errors=True)


@dataclass
class FailoverPlatform:
    postgres: PrivatePostgres
    kafka: PrivateKafka
    replicas: Replicas
