"""The processes ``civitas up`` runs, and their restarts: once the platform is ready, a
process that exits on its own (a crash, an OOM kill, a SIGKILL) is started again after
a backoff, counted and said, and the rest of the platform goes on serving; only Ctrl-C
or SIGTERM ends it.

The backoff doubles while a process keeps dying, so a service that cannot start does
not spin a core, and starts from the first delay again once one ran for a while, as
Kubernetes' CrashLoopBackOff does."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """The wait before a restart: ``first`` seconds, twice as long for each exit in a
    row up to ``longest``; an exit after ``steady`` seconds of running is a first one."""

    first: float = 0.5
    longest: float = 30.0
    steady: float = 60.0

    def delay(self, in_a_row: int) -> float:
        """The wait before restarting a process that exited ``in_a_row`` times running."""
        return min(self.longest, self.first * 2.0 ** max(0, in_a_row - 1))


@dataclass
class Child:
    """A process of the platform: what it is called in what ``civitas up`` prints, where
    it serves gRPC, what it runs (``python -m module``) with which settings, the process
    now running it, and how often it was restarted."""

    name: str
    address: str
    module: str
    env: dict[str, str]
    process: asyncio.subprocess.Process
    restarts: int = 0

    @classmethod
    async def start(cls, name: str, address: str, module: str, env: dict[str, str]) -> Child:
        """``python -m module`` started with the settings ``env``."""
        return cls(name, address, module, env, await _spawn(module, env))

    async def keep_running(self, stop: asyncio.Event, backoff: Backoff) -> None:
        """Start the process again each time it exits, after the backoff, until ``stop``
        is set (then return at once, never starting one more); say each exit (stderr,
        at once) and each restart (stdout, with the exit code and the count)."""
        loop = asyncio.get_running_loop()
        in_a_row = 0
        while True:
            began = loop.time()
            code = await _exit_or_stop(self.process, stop)
            if code is None:
                return
            in_a_row = 1 if loop.time() - began >= backoff.steady else in_a_row + 1
            wait = backoff.delay(in_a_row)
            print(
                f"civitas: {self.name} exited (exit code {code}); starting it again in {wait:g}s",
                file=sys.stderr,
                flush=True,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if stop.is_set():
                return
            self.process = await _spawn(self.module, self.env)
            self.restarts += 1
            print(
                f"civitas: {self.name} restarted (exit code {code}, restart {self.restarts})",
                flush=True,
            )


async def _exit_or_stop(process: asyncio.subprocess.Process, stop: asyncio.Event) -> int | None:
    """The process's exit code once it exits, or None as soon as ``stop`` is set."""
    exited = asyncio.ensure_future(process.wait())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
    exited.cancel()
    stopping.cancel()
    return None if stop.is_set() else process.returncode


async def _spawn(module: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", module, env=env)
