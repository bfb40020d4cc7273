"""Shared helpers for the benchmarks: timing, interleaving, medians, results files.

See the shared BENCHMARKS.md: baselines run in the same process as the thing
measured, interleaved (A, B, A, B …), and each figure is the median of several
repetitions. Every measurement here is a rate over a fixed duration.
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: One measurement: run for about ``seconds`` and return a rate (e.g. events/s).
Variant = Callable[[float], Awaitable[float]]
#: One unit of work; returns how many items (events) it did.
AsyncStep = Callable[[], Awaitable[int]]
SyncStep = Callable[[], int]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


def env_float(name: str, default: float) -> float:
    """A float from the environment (for shorter or longer runs), else ``default``."""
    raw = os.environ.get(name)
    return float(raw) if raw else default


def env_int(name: str, default: int) -> int:
    """An int from the environment, else ``default``."""
    raw = os.environ.get(name)
    return int(raw) if raw else default


def log(message: str) -> None:
    """Progress on stderr, so stdout stays the results table."""
    print(message, file=sys.stderr, flush=True)


# -- rates --------------------------------------------------------------------


async def rate_for(seconds: float, step: AsyncStep) -> float:
    """Call ``step`` until ``seconds`` have passed; items per second."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        count += await step()
    return count / (time.perf_counter() - start)


def rate_for_sync(seconds: float, step: SyncStep) -> float:
    """Call the blocking ``step`` until ``seconds`` have passed; items per second."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        count += step()
    return count / (time.perf_counter() - start)


async def concurrent_rate(seconds: float, steps: list[AsyncStep]) -> float:
    """One asyncio task per step, each looping until the deadline; total items per second."""
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(step: AsyncStep) -> int:
        count = 0
        while time.perf_counter() < deadline:
            count += await step()
        return count

    counts = await asyncio.gather(*(worker(step) for step in steps))
    return sum(counts) / (time.perf_counter() - start)


def threaded_rate(seconds: float, steps: list[SyncStep]) -> float:
    """One thread per blocking step, started together; total items per second."""
    barrier = threading.Barrier(len(steps) + 1)
    box: dict[str, float] = {}

    def worker(step: SyncStep) -> int:
        barrier.wait()
        deadline = box["deadline"]
        count = 0
        while time.perf_counter() < deadline:
            count += step()
        return count

    with ThreadPoolExecutor(max_workers=len(steps)) as pool:
        futures = [pool.submit(worker, step) for step in steps]
        start = time.perf_counter()
        box["deadline"] = start + seconds
        barrier.wait()
        total = sum(f.result() for f in futures)
    return total / (time.perf_counter() - start)


async def interleaved(
    variants: Mapping[str, Variant],
    *,
    repeats: int,
    seconds: float,
    warmup_seconds: float = 0.3,
    label: str = "",
) -> dict[str, list[float]]:
    """Warm each variant up once, then run them A, B, C, A, B, C … ``repeats`` times."""
    for run in variants.values():
        await run(warmup_seconds)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(repeats):
        for name, run in variants.items():
            value = await run(seconds)
            samples[name].append(value)
            log(f"  {label}{name} #{rep + 1}: {value:,.1f}")
    return samples


def median(values: list[float]) -> float:
    """The median of the repetitions."""
    return float(statistics.median(values))


# -- results ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A target from the issue: ``on`` names the result field it applies to."""

    on: str
    op: str
    threshold: float

    def met(self, result: Result) -> bool | None:
        value = result.value if self.on == "value" else result.ratio
        if value is None:
            return None
        return _OPS[self.op](value, self.threshold)

    def to_json(self) -> dict[str, Any]:
        return {"on": self.on, "op": self.op, "threshold": self.threshold}


@dataclass
class Result:
    """One figure of a results file (see BENCHMARKS.md)."""

    case: str
    samples: list[float]
    unit: str
    baseline: str | None = None
    baseline_samples: list[float] | None = None
    target: Target | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return median(self.samples)

    @property
    def baseline_value(self) -> float | None:
        return median(self.baseline_samples) if self.baseline_samples else None

    @property
    def ratio(self) -> float | None:
        base = self.baseline_value
        return self.value / base if base else None

    def target_met(self) -> bool | None:
        return self.target.met(self) if self.target else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"case": self.case, "value": round(self.value, 1), "unit": self.unit}
        if self.baseline is not None:
            out["baseline"] = self.baseline
            base = self.baseline_value
            out["baseline_value"] = round(base, 1) if base is not None else None
            ratio = self.ratio
            out["ratio"] = round(ratio, 3) if ratio is not None else None
        if self.target is not None:
            out["target"] = self.target.to_json()
            out["target_met"] = self.target_met()
        out["samples"] = [round(s, 1) for s in self.samples]
        if self.baseline_samples:
            out["baseline_samples"] = [round(s, 1) for s in self.baseline_samples]
        if self.note:
            out["note"] = self.note
        out.update(self.extra)
        return out


def machine_info(**extra: Any) -> dict[str, Any]:
    """CPUs, Python and SQLite versions, plus whatever the benchmark adds."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        **extra,
    }


def code_state(*paths: str) -> dict[str, Any]:
    """The git commit measured, and which of ``paths`` had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=True
            )
        except (OSError, subprocess.CalledProcessError):
            return ""
        return done.stdout.strip()

    status = git("status", "--porcelain", "--", *paths)
    return {
        "commit": git("rev-parse", "HEAD") or None,
        "uncommitted": [line.split(maxsplit=1)[1] for line in status.splitlines()],
    }


def write_results(
    name: str, machine: Mapping[str, Any], results: list[Result], **extra: Any
) -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": dict(machine),
        **extra,
        "results": [r.to_json() for r in results],
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def format_table(results: list[Result]) -> str:
    """A plain-text table of the figures, for the terminal."""
    rows = [("case", "value", "baseline", "ratio", "target")]
    for r in results:
        base = r.baseline_value
        ratio = r.ratio
        met = r.target_met()
        target = ""
        if r.target is not None:
            verdict = "met" if met else "MISSED"
            target = f"{r.target.on} {r.target.op} {r.target.threshold:g}: {verdict}"
        rows.append(
            (
                r.case,
                f"{r.value:,.0f}",
                f"{base:,.0f}" if base is not None else "",
                f"{ratio:.2f}" if ratio is not None else "",
                target,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
