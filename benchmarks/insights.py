"""Projection lag of insights while ``civitas demo`` loads the district at full speed.

Run with ``make bench-insights`` or ``python -m benchmarks.insights``.
Writes ``benchmarks/results/insights.json`` and prints a table.

The platform runs as a user runs it: ``civitas up`` starts every service as its own
process (the embedded default: SQLite stores, store feeds), and ``civitas demo``
loads the seed's district, a year of requests, volunteering and funds, as fast as
it goes. insights' four projections read the other services' stores and record,
for every event they apply, the time from the event's occurrence (its append) to
its application, in the histogram ``civitas_projection_delay_seconds``. The p50 and
p99 are read from that histogram (linear interpolation inside a bucket, as
Prometheus' ``histogram_quantile`` does), per projection and over all four.

Baseline, in the same run: a bare subscriber in this process tails the same four
stores with the same store feed and filters and does nothing with the events; its
delays are
measured exactly per event. It is the limit of delivery alone (polling another
process's SQLite file), without a projection's work and transaction.

Repeated ``BENCH_REPEATS`` (default 2) times, each on a fresh platform in a fresh
directory; each figure is the median of the repetitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.support.platform import address_of, civitas_up

from civitas.eventkit import RecordedEvent, StoreFeed, open_event_store
from civitas.insights.bootstrap import sources

from ._common import (
    Result,
    Target,
    code_state,
    env_int,
    format_table,
    log,
    machine_info,
    write_results,
)

REPEATS = env_int("BENCH_REPEATS", 2)
MEMBERS = env_int("BENCH_MEMBERS", 6000)  # the demo's defaults: the seed's figures
REQUESTS = env_int("BENCH_REQUESTS", 6029)
FILTERS = {service: projection.filter for service, projection in sources()}
SOURCES = list(FILTERS)
BUCKET = re.compile(
    r'^civitas_projection_delay_seconds_bucket\{le="(?P<le>[^"]+)",projection="(?P<p>[^"]+)"\}'
    r" (?P<count>\S+)$"
)


async def demo(env: dict[str, str], cwd: Path) -> float:
    def address(service: str) -> str:
        return address_of(env, service)

    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "civitas.cli",
        "demo",
        "--members",
        str(MEMBERS),
        "--requests",
        str(REQUESTS),
        "--party-orgs",
        address("party_orgs"),
        "--cases-address",
        address("cases"),
        "--volunteers-address",
        address("volunteers"),
        "--funds-address",
        address("funds"),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )
    if await process.wait() != 0:
        raise RuntimeError("civitas demo failed")
    return time.perf_counter() - started


class BareSubscriber:
    """Tails the sources' stores and records each event's delay; does nothing else."""

    def __init__(self, var: Path) -> None:
        self.var = var
        self.delays: list[float] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.stores: list[object] = []

    async def start(self) -> None:
        for service in SOURCES:
            store = await open_event_store(f"sqlite:///{self.var}/{service}/events.db")
            self.stores.append(store)
            after = await store.head_position()
            self.tasks.append(
                asyncio.create_task(StoreFeed(store).run(self._take, after=after, filter=None))
            )

    async def _take(self, batch: list[RecordedEvent]) -> None:
        now = time.time()
        self.delays.extend(now - e.occurred_at.timestamp() for e in batch)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for store in self.stores:
            await store.close()  # type: ignore[attr-defined]


def scrape(port: str) -> dict[str, list[tuple[float, float]]]:
    """Cumulative buckets of the delay histogram, per projection."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    buckets: dict[str, list[tuple[float, float]]] = {}
    for line in text.splitlines():
        match = BUCKET.match(line)
        if match and match["p"].startswith("insights_"):
            buckets.setdefault(match["p"], []).append((float(match["le"]), float(match["count"])))
    return {p: sorted(b) for p, b in buckets.items()}


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """``histogram_quantile``: linear inside the bucket the rank falls in."""
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            inside = count - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 0)
        lower, below = upper, count
    return lower


def merged(histograms: dict[str, list[tuple[float, float]]]) -> list[tuple[float, float]]:
    edges = sorted({le for b in histograms.values() for le, _ in b})
    return [(le, sum(dict(b).get(le, 0.0) for b in histograms.values())) for le in edges]


def exact_quantile(q: float, values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def caught_up(port: str, expected: float, within: float = 120) -> None:
    """Wait until insights has applied as many events as the bare subscriber saw (the
    same filters)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        counts = [b[-1][1] for b in scrape(port).values()]
        if sum(counts) >= expected:
            return
        await asyncio.sleep(0.5)


async def one_run() -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-insights-"))
    try:
        # as the end-to-end tests run it, with time for a loaded machine
        async with civitas_up(tmp, start_seconds=120, stop_seconds=60) as running:
            env = running.env
            bare = BareSubscriber(Path(env["CIVITAS_VAR_DIR"]))
            await bare.start()
            seconds = await demo(env, tmp)
            await asyncio.sleep(2)
            await bare.stop()
            port = env["CIVITAS_INSIGHTS_METRICS_PORT"]
            await caught_up(port, len(bare.delays))
            histograms = scrape(port)
        figures = {
            "demo_seconds": seconds,
            "events": float(len(bare.delays)),
            "bare_p50": exact_quantile(0.5, bare.delays) * 1000,
            "bare_p99": exact_quantile(0.99, bare.delays) * 1000,
            "all_p50": quantile(0.5, merged(histograms)) * 1000,
            "all_p99": quantile(0.99, merged(histograms)) * 1000,
        }
        for name, buckets in histograms.items():
            figures[f"{name}_p99"] = quantile(0.99, buckets) * 1000
        return figures
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def results_of(runs: list[dict[str, float]]) -> list[Result]:
    def samples(key: str) -> list[float]:
        return [run[key] for run in runs if key in run]

    bare = "a bare subscriber on the same store feeds, doing nothing (exact per event)"
    results = [
        Result(
            "insights.projection_lag.p99",
            samples("all_p99"),
            "ms",
            baseline=bare,
            baseline_samples=samples("bare_p99"),
            target=Target("value", "<=", 1000),
            extra={"events_per_run": samples("events"), "demo_seconds": samples("demo_seconds")},
        ),
        Result(
            "insights.projection_lag.p50",
            samples("all_p50"),
            "ms",
            baseline=bare,
            baseline_samples=samples("bare_p50"),
        ),
    ]
    for name in sorted(
        {k[: -len("_p99")] for run in runs for k in run if k.startswith("insights_")}
    ):
        results.append(Result(f"{name}.projection_lag.p99", samples(f"{name}_p99"), "ms"))
    return results


async def run() -> list[Result]:
    runs = []
    for n in range(REPEATS):
        log(f"insights: run {n + 1} of {REPEATS}: civitas up, then civitas demo at full speed")
        runs.append(await one_run())
        log(f"  {runs[-1]}")
    return results_of(runs)


def main() -> None:
    started = time.perf_counter()
    code = code_state("services/civitas", "benchmarks")
    results = asyncio.run(run())
    path = write_results(
        "insights",
        machine_info(),
        results,
        code=code,
        method={
            "repeats": REPEATS,
            "statistic": "median of runs; p50/p99 within a run",
            "platform": "civitas up (every service a process, SQLite stores, store feeds)",
            "load": f"civitas demo --members {MEMBERS} --requests {REQUESTS}",
            "quantiles_from": "civitas_projection_delay_seconds histogram (interpolated)",
        },
    )
    print(format_table(results))
    log(f"wrote {path} in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
