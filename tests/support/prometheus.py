"""A real Prometheus for tests: its config made from the shipped one, its HTTP API, and
the queries to put to it (dashboard panels, the signal side of alert rules)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SHIPPED_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "rules"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"

# What Grafana would put in place of its variables, for a dashboard over the last hour
# with every service selected; but the rate interval is 5m, not the 1m Grafana takes
# there at a 15 s scrape: the tests make one burst of traffic and then wait for every
# query to return data, which on a busy machine can take longer than a minute.
GRAFANA_VALUES = {"__rate_interval": "5m", "__interval": "15s", "__range": "1h", "service": ".*"}

COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


def config_for(metrics_ports: Mapping[str, int], *, every: str = "1s") -> str:
    """The shipped prometheus.yml with only the jobs of ``metrics_ports`` (job name =
    service), each scraping its test port, scraping and evaluating rules ``every``, and
    the shipped rule files by absolute path. Fails if the shipped file lacks a job."""
    text = SHIPPED_CONFIG.read_text()
    head, marker, jobs = text.partition("scrape_configs:\n")
    assert marker, "prometheus.yml has no scrape_configs"
    for setting in ("scrape_interval", "evaluation_interval"):
        head, replaced = re.subn(rf"(?m)^(  {setting}): \S+$", rf"\1: {every}", head)
        assert replaced == 1, f"prometheus.yml sets global {setting} once"
    head, replaced = re.subn(r"(?m)^  - rules/", f"  - {RULES}/", head)
    assert replaced, "prometheus.yml names its rule files under rules/"
    blocks = {}
    for block in re.split(r"(?m)^(?=  - job_name: )", jobs):
        name = re.match(r"  - job_name: (\S+)", block)
        if name:
            blocks[name.group(1)] = block
    kept = []
    for service, port in metrics_ports.items():
        assert service in blocks, f"prometheus.yml has no job for {service}"
        block, replaced = re.subn(r'"127\.0\.0\.1:\d+"', f'"127.0.0.1:{port}"', blocks[service])
        assert replaced == 1, f"the {service} job has one target"
        kept.append(block)
    return head + marker + "".join(kept)


def _prepare(workdir: Path, config: str) -> tuple[Path, BinaryIO]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(config)
    return workdir / "prometheus.yml", (workdir / "prometheus.log").open("wb")


@contextlib.asynccontextmanager
async def running_prometheus(config: str, workdir: Path, port: int) -> AsyncIterator[str]:
    """Debian's prometheus on ``config``, its storage and log in ``workdir``; yields its
    URL (not yet ready: see :meth:`PrometheusApi.ready`)."""
    config_file, log = await asyncio.to_thread(_prepare, workdir, config)
    try:
        process = await asyncio.create_subprocess_exec(
            "prometheus",
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=log,
            stderr=log,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
    finally:
        log.close()


class PrometheusApi:
    """The parts of Prometheus' HTTP API the tests read."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def get(self, path: str, **params: str) -> Any:
        """The JSON answer of ``GET path?params``, an error answer included."""
        query = urllib.parse.urlencode(params)

        def fetch() -> Any:
            try:
                with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as reply:
                    return json.load(reply)
            except urllib.error.HTTPError as refused:  # 400/422: a query it cannot run
                return json.load(refused)

        return await asyncio.to_thread(fetch)

    async def ready(self) -> bool:
        with contextlib.suppress(OSError):
            return bool(await asyncio.to_thread(urllib.request.urlopen, f"{self.url}/-/ready"))
        return False

    async def query(self, expr: str) -> dict[str, Any]:
        """An instant query now: ``{"status": ..., "data": ...}`` or the error."""
        answer: dict[str, Any] = await self.get("/api/v1/query", query=expr)
        return answer

    async def targets_up(self) -> dict[str, str]:
        """Each active target's job and its health."""
        answer = await self.get("/api/v1/targets", state="active")
        return {t["labels"]["job"]: t["health"] for t in answer["data"]["activeTargets"]}

    async def alerting_rules(self) -> list[dict[str, Any]]:
        """Every alerting rule Prometheus loaded, with its ``query`` and ``health``."""
        answer = await self.get("/api/v1/rules", type="alert")
        return [rule for group in answer["data"]["groups"] for rule in group["rules"]]

    async def metric_names(self) -> set[str]:
        answer = await self.get("/api/v1/label/__name__/values")
        return set(answer["data"])


def has_data(answer: Mapping[str, Any]) -> bool:
    """A successful query with at least one sample that is a number (not NaN)."""
    if answer.get("status") != "success":
        return False
    data = answer["data"]
    if data["resultType"] == "scalar":
        return not math.isnan(float(data["result"][1]))
    return any(not math.isnan(float(series["value"][1])) for series in data["result"])


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


def panel_queries() -> list[PanelQuery]:
    """Every query of every panel (rows' panels included) of every shipped dashboard."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                found.append(
                    PanelQuery(dashboard["title"], panel["title"], target["refId"], target["expr"])
                )
    return found


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def concrete(expr: str, values: Mapping[str, str] = GRAFANA_VALUES) -> str:
    """A panel's query with Grafana's variables (``$name``, ``${name}``) replaced."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    assert "$" not in expr, f"a Grafana variable without a test value in {expr!r}"
    return expr


def shipped_alert_names() -> list[str]:
    """The names of the alerts in the shipped rule files, read from the files' text."""
    return [
        name
        for path in sorted(RULES.glob("*.yml"))
        for name in re.findall(r"(?m)^\s*- alert: (\S+)$", path.read_text())
    ]


def signal_of(expr: str) -> str:
    """The left side of an alert written ``<signal> <comparison> <number>``: what the
    alert watches, which returns data whether or not the alert fires. Raises for an
    expression of another shape."""
    found = _top_level_comparisons(expr)
    assert len(found) == 1, f"not `<signal> <comparison> <number>`: {expr!r}"
    at, operator = found[0]
    threshold = expr[at + len(operator) :].strip()
    try:
        float(threshold)
    except ValueError:
        raise AssertionError(f"the threshold is not a number: {expr!r}") from None
    return expr[:at].strip()


def _top_level_comparisons(expr: str) -> list[tuple[int, str]]:
    """Where comparison operators stand outside brackets, braces and strings."""
    found: list[tuple[int, str]] = []
    depth, quote, at = 0, "", 0
    while at < len(expr):
        char = expr[at]
        if quote:
            if char == "\\":
                at += 1
            elif char == quote:
                quote = ""
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            operator = next((op for op in COMPARISONS if expr.startswith(op, at)), None)
            if operator:
                found.append((at, operator))
                at += len(operator)
                continue
        at += 1
    return found


METRIC_NAME = re.compile(r"\b(?:civitas|grpc_server)_[a-z_]+\b")


def metric_names_in(expr: str) -> set[str]:
    """The platform's metric names a query refers to (label names never start so)."""
    return set(METRIC_NAME.findall(expr))
