"""The ops dashboards and alert rules against the platform as it runs: `civitas up` on
Kafka, the demo loaded, and Debian's prometheus scraping it with the shipped config."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaProducer

from civitas.cases.v1 import cases_pb2 as cases_pb
from civitas.cases.v1 import cases_pb2_grpc as cases_grpc
from civitas.chassis.auth import Role, TokenAuthority
from civitas.eventkit.kafka import events_topic
from civitas.funds.v1 import funds_pb2 as funds_pb
from civitas.funds.v1 import funds_pb2_grpc as funds_grpc
from civitas.party_orgs.v1 import party_orgs_pb2 as po_pb
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as po_grpc
from civitas.runner import SERVICES
from tests.conftest import missing_dependency
from tests.support.platform import SECRET, address_of, civitas_up, free_port
from tests.support.processes import eventually
from tests.support.prometheus import (
    PrometheusApi,
    concrete,
    config_for,
    has_data,
    metric_names_in,
    panel_queries,
    running_prometheus,
    shipped_alert_names,
    signal_of,
)

pytestmark = [pytest.mark.slow, pytest.mark.kafka]
COMMUNITY = "QH-01-01"
Metadata = list[tuple[str, str]]


@pytest.fixture
def prometheus_installed() -> None:
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        missing_dependency("prometheus (run `make prometheus-install`)")


def ops_settings(bootstrap: str) -> dict[str, str]:
    """Relaying to and consuming from Kafka under a namespace of the test's own; urgent
    cases overdue within seconds, and supervised every second."""
    return {
        "CIVITAS_KAFKA_BOOTSTRAP": bootstrap,
        "CIVITAS_KAFKA_NAMESPACE": f"ops{uuid.uuid4().hex[:10]}",
        "CIVITAS_CASES_DEADLINES": "urgent=0.02m/0.05m",
        "CIVITAS_CASES_SUPERVISE_SECONDS": "1",
    }


async def load_demo(env: dict[str, str], cwd: Path) -> None:
    demo = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "civitas.cli", "demo"],
        *["--members", "200", "--requests", "60", "--activities", "10", "--expenditures", "10"],
        *["--party-orgs", address_of(env, "party_orgs")],
        *["--cases-address", address_of(env, "cases")],
        *["--volunteers-address", address_of(env, "volunteers")],
        *["--funds-address", address_of(env, "funds")],
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await asyncio.wait_for(demo.wait(), 90) == 0, "civitas demo failed"


async def ask_for_money_for_a_case(cases: cases_grpc.CasesServiceStub, auth: Metadata) -> None:
    """A case dispatched, accepted and asking funds for money: funds' saga opens the
    expenditure from cases' CaseFundingRequested on Kafka."""
    registered = await cases.RegisterCase(
        cases_pb.RegisterCaseRequest(
            channel=cases_pb.CHANNEL_HOTLINE_12345,
            community_code=COMMUNITY,
            address="大光路东1区3栋",
            description="楼道灯坏了",
            urgency=cases_pb.URGENCY_NORMAL,
            resident_name="周敏",
            resident_phone="13800001111",
        ),
        metadata=auth,
    )
    case_id = registered.case.case_id
    await cases.ClassifyCase(
        cases_pb.ClassifyCaseRequest(
            case_id=case_id, category="公共设施", urgency=cases_pb.URGENCY_NORMAL
        ),
        metadata=auth,
    )
    await cases.FileCase(cases_pb.FileCaseRequest(case_id=case_id), metadata=auth)
    await cases.DispatchCase(cases_pb.DispatchCaseRequest(case_id=case_id), metadata=auth)
    await cases.AcceptCase(
        cases_pb.AcceptCaseRequest(case_id=case_id, accepted_by="王芳"), metadata=auth
    )
    await cases.RequestFunds(
        cases_pb.RequestFundsRequest(
            case_id=case_id,
            amount_fen=50_000,
            payee_account="payee:QH:suppliers",
            purpose="更换楼道灯具",
            evidence="报价单 2026-88",
        ),
        metadata=auth,
    )


async def operate(env: dict[str, str]) -> None:
    """What operators should see on the dashboards besides the demo: an overdue urgent
    case, a saga step, a caller's mistake, and an expenditure naming a case that does
    not exist, which cases' saga gives up on when it is rejected."""
    token = TokenAuthority(SECRET).mint("operator", [Role.DISTRICT_ADMIN], ["QH"])
    auth = [("authorization", f"Bearer {token}")]
    async with (
        grpc.aio.insecure_channel(address_of(env, "cases")) as cases_channel,
        grpc.aio.insecure_channel(address_of(env, "funds")) as funds_channel,
        grpc.aio.insecure_channel(address_of(env, "party_orgs")) as party_orgs_channel,
    ):
        cases = cases_grpc.CasesServiceStub(cases_channel)
        await cases.RegisterCase(
            cases_pb.RegisterCaseRequest(
                channel=cases_pb.CHANNEL_HOTLINE_12345,
                community_code=COMMUNITY,
                address="大光路东1区5栋",
                description="电梯困人",
                urgency=cases_pb.URGENCY_URGENT,
                resident_name="李娜",
                resident_phone="13800002222",
            ),
            metadata=auth,
        )
        await ask_for_money_for_a_case(cases, auth)
        party_orgs = po_grpc.PartyOrgsServiceStub(party_orgs_channel)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await party_orgs.GetAdminUnit(po_pb.GetAdminUnitRequest(code="QH-99"), metadata=auth)
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        funds = funds_grpc.FundsServiceStub(funds_channel)
        orphan = await funds.RequestExpenditure(
            funds_pb.RequestExpenditureRequest(
                community_code=COMMUNITY,
                payee_account="payee:QH:suppliers",
                amount_fen=10_000,
                purpose="楼道灯具",
                evidence="报价单 2026-89",
                case_id=str(uuid.uuid4()),
            ),
            metadata=auth,
        )
        await funds.RejectExpenditure(
            funds_pb.RejectExpenditureRequest(
                expenditure_id=orphan.expenditure.expenditure_id, reason="没有这个案件"
            ),
            metadata=auth,
        )


async def publish_garbage(env: dict[str, str]) -> None:
    """A message that is no event envelope on party_orgs' topic: its consumers set it
    aside as a dead letter."""
    topic = events_topic("party_orgs", env["CIVITAS_KAFKA_NAMESPACE"])
    producer = AIOKafkaProducer(bootstrap_servers=env["CIVITAS_KAFKA_BOOTSTRAP"])
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"not an event envelope", key=b"member-garbage")
    finally:
        await producer.stop()


async def empty_queries(api: PrometheusApi, queries: dict[str, str]) -> dict[str, str]:
    """The queries (by what they are) that return no number now."""
    answers = await asyncio.gather(*(api.query(expr) for expr in queries.values()))
    return {
        what: expr
        for (what, expr), answer in zip(queries.items(), answers, strict=True)
        if not has_data(answer)
    }


@dataclass
class Seen:
    """What Prometheus answered once the platform had been operated."""

    rules: list[dict[str, Any]]
    panels: dict[str, str]
    signals: dict[str, str]
    empty: dict[str, str]
    whole_rules: list[dict[str, Any]]
    scraped: set[str]


async def operated_and_scraped(api: PrometheusApi, env: dict[str, str], cwd: Path) -> Seen:
    """Load the demo and operate the platform while Prometheus scrapes it; then every
    panel query and alert signal, asked until each returns data (or 30 s have passed)."""
    await eventually(api.ready, "prometheus ready", seconds=20, poll=0.2)
    await load_demo(env, cwd)
    await operate(env)
    await publish_garbage(env)

    async def every_target_up() -> bool:
        return await api.targets_up() == dict.fromkeys(SERVICES, "up")

    await eventually(every_target_up, "every service's target up", seconds=20, poll=0.5)
    rules = await api.alerting_rules()
    panels = {str(q): concrete(q.expr) for q in panel_queries()}
    signals = {f"alert {r['name']}": signal_of(r["query"]) for r in rules}
    empty: dict[str, str] = {}

    async def all_have_data() -> bool:
        empty.clear()
        empty.update(await empty_queries(api, {**panels, **signals}))
        return not empty

    with contextlib.suppress(AssertionError):  # the test names the queries left empty
        await eventually(all_have_data, "data for every query", seconds=30, poll=1)
    whole = await asyncio.gather(*(api.query(r["query"]) for r in rules))
    return Seen(rules, panels, signals, empty, list(whole), await api.metric_names())


@pytest.mark.usefixtures("prometheus_installed")
async def test_every_dashboard_panel_and_alert_signal_returns_data_from_the_running_platform(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with civitas_up(tmp_path, ops_settings(kafka_bootstrap)) as platform:
        ports = {s: int(platform.env[f"CIVITAS_{s.upper()}_METRICS_PORT"]) for s in SERVICES}
        workdir = tmp_path / "prometheus"
        async with running_prometheus(config_for(ports), workdir, free_port()) as url:
            seen = await operated_and_scraped(PrometheusApi(url), platform.env, tmp_path)

    names = [rule["name"] for rule in seen.rules]
    assert sorted(names) == sorted(shipped_alert_names())
    assert [rule["name"] for rule in seen.rules if rule["health"] != "ok"] == []
    assert [
        n for n, a in zip(names, seen.whole_rules, strict=True) if a["status"] != "success"
    ] == []
    assert len(seen.panels) >= 14
    assert seen.empty == {}
    queries = [*seen.panels.values(), *seen.signals.values()]
    assert set().union(*map(metric_names_in, queries)) - seen.scraped == set()
