"""Services as real processes: party_orgs alone, and the platform as a user runs it."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from civitas.cases.v1 import cases_pb2 as cases_pb
from civitas.cases.v1 import cases_pb2_grpc as cases_grpc
from civitas.chassis.auth import Role, TokenAuthority
from civitas.demo import SUBSIDY_FEN, spread
from civitas.funds.v1 import funds_pb2 as funds_pb
from civitas.funds.v1 import funds_pb2_grpc as funds_grpc
from civitas.party_orgs.domain.members import member_id_for
from civitas.party_orgs.v1 import party_orgs_pb2 as pb
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as pb_grpc
from civitas.runner import wait_healthy
from civitas.volunteers.domain.volunteers import volunteer_id_for_member
from tests.support.platform import SECRET, address_of, civitas_up, cli, free_port, service_env
from tests.support.processes import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[str, int, asyncio.subprocess.Process]]:
    grpc_port, metrics_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "civitas.party_orgs",
        cwd=tmp_path,
        env=service_env(tmp_path, grpc_port, metrics_port),
    )
    address = f"127.0.0.1:{grpc_port}"
    try:
        await wait_healthy(address)
        yield address, metrics_port, process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_service_process_answers_over_grpc_serves_metrics_and_stops_gracefully(
    service: tuple[str, int, asyncio.subprocess.Process],
) -> None:
    address, metrics_port, process = service
    token = TokenAuthority(SECRET).mint("admin", [Role.DISTRICT_ADMIN], ["QH"])
    auth = [("authorization", f"Bearer {token}")]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.PartyOrgsServiceStub(channel)
        for code in ["QH", "QH-01", "QH-01-01"]:
            await stub.RegisterAdminUnit(
                pb.RegisterAdminUnitRequest(code=code, name=code), metadata=auth, timeout=5
            )
        await stub.RegisterAdminUnit(
            pb.RegisterAdminUnitRequest(
                code="QH-01-01-G01", name="一网格", addresses=["光华路5号"]
            ),
            metadata=auth,
            timeout=5,
        )
        resolved = await stub.ResolveGrid(
            pb.ResolveGridRequest(community_code="QH-01-01", address="光华路5号2栋"),
            metadata=auth,
            timeout=5,
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetAdminUnit(pb.GetAdminUnitRequest(code="QH"), timeout=5)

    url = f"http://127.0.0.1:{metrics_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    process.send_signal(signal.SIGTERM)
    exit_code = await asyncio.wait_for(process.wait(), 20)

    assert resolved.grid.code == "QH-01-01-G01"
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="ResolveGrid"' in text
    assert exit_code == 0


async def case_paid_for(
    env: dict[str, str], cwd: Path, case_id: str, cases_address: str, funds_address: str
) -> dict[str, Any]:
    """The saga between the cases and funds processes: the handler asks for 500 yuan,
    someone else approves, funds pays; the case's funding request as it ends."""
    await cli(
        env, cwd, "cases.AcceptCase", {"caseId": case_id, "acceptedBy": "王芳"}, cases_address
    )
    asked = await cli(
        env,
        cwd,
        "cases.RequestFunds",
        {
            "caseId": case_id,
            "amountFen": "50000",
            "payeeAccount": "payee:QH:suppliers",
            "purpose": "更换楼道灯具",
            "evidence": "报价单 2026-88",
        },
        cases_address,
    )
    expenditure_id = asked["case"]["funding"][0]["expenditureId"]
    approver = TokenAuthority(SECRET).mint("approver", [Role.DISTRICT_ADMIN], ("QH",))
    metadata = [("authorization", f"Bearer {approver}")]
    async with (
        grpc.aio.insecure_channel(funds_address) as funds_channel,
        grpc.aio.insecure_channel(cases_address) as cases_channel,
    ):
        funds = funds_grpc.FundsServiceStub(funds_channel)
        cases = cases_grpc.CasesServiceStub(cases_channel)

        async def approved() -> bool:  # once funds has read the request from cases' store
            try:
                await funds.ApproveExpenditure(
                    funds_pb.ApproveExpenditureRequest(expenditure_id=expenditure_id),
                    metadata=metadata,
                )
            except grpc.aio.AioRpcError as missing:
                if missing.code() is not grpc.StatusCode.NOT_FOUND:
                    raise
                return False
            return True

        async def settled() -> bool:  # once cases has read the outcome from funds' store
            got = await cases.GetCase(cases_pb.GetCaseRequest(case_id=case_id), metadata=metadata)
            return bool(got.case.funding[0].status != cases_pb.FUNDING_STATUS_PENDING)

        await eventually(approved, "funds to hold the case's request", seconds=60, poll=0.1)
        await eventually(settled, "cases to learn the request's outcome", seconds=60, poll=0.1)
    reply = await cli(env, cwd, "cases.GetCase", {"caseId": case_id}, cases_address)
    funding: dict[str, Any] = reply["case"]["funding"][0]
    return funding


async def test_a_new_user_runs_the_platform_loads_the_demo_and_calls_the_api(
    tmp_path: Path,
) -> None:
    async with civitas_up(tmp_path) as platform:
        env = platform.env
        address = address_of(env, "party_orgs")
        cases_address = f"127.0.0.1:{env['CIVITAS_CASES_GRPC_PORT']}"
        demo_args = [
            sys.executable,
            "-m",
            "civitas.cli",
            "demo",
            "--members",
            "300",
            "--requests",
            "200",
            "--activities",
            "20",
            "--volunteers-address",
            f"127.0.0.1:{env['CIVITAS_VOLUNTEERS_GRPC_PORT']}",
            "--party-orgs",
            address,
            "--cases-address",
            cases_address,
            "--funds-address",
            f"127.0.0.1:{env['CIVITAS_FUNDS_GRPC_PORT']}",
            "--expenditures",
            "40",
        ]
        piped = {"cwd": tmp_path, "env": env, "stdout": asyncio.subprocess.PIPE}
        demo = await asyncio.create_subprocess_exec(*demo_args, **piped)
        demo_out, _ = await asyncio.wait_for(demo.communicate(), 240)
        again = await asyncio.create_subprocess_exec(*demo_args, **piped)  # the demo run twice
        again_out, _ = await asyncio.wait_for(again.communicate(), 240)
        call = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "civitas.cli",
            "call",
            "party_orgs.ListAdminUnits",
            '{"parentCode": "QH"}',
            "--address",
            address,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        call_out, _ = await asyncio.wait_for(call.communicate(), 60)
        case = await cli(
            env,
            tmp_path,
            "cases.RegisterCase",
            {
                "channel": "CHANNEL_HOTLINE_12345",
                "communityCode": "QH-01-01",
                "address": "大光路东1区3栋",
                "description": "楼道灯坏了",
                "urgency": "URGENCY_NORMAL",
                "residentName": "周敏",
                "residentPhone": "13800001111",
            },
            cases_address,
        )
        case_id = case["case"]["caseId"]
        await cli(
            env,
            tmp_path,
            "cases.ClassifyCase",
            {"caseId": case_id, "category": "公共设施", "urgency": "URGENCY_NORMAL"},
            cases_address,
        )
        await cli(env, tmp_path, "cases.FileCase", {"caseId": case_id}, cases_address)
        dispatched = await cli(
            env, tmp_path, "cases.DispatchCase", {"caseId": case_id}, cases_address
        )
        funds_address = f"127.0.0.1:{env['CIVITAS_FUNDS_GRPC_PORT']}"
        funding = await case_paid_for(env, tmp_path, case_id, cases_address, funds_address)
        volunteers_address = f"127.0.0.1:{env['CIVITAS_VOLUNTEERS_GRPC_PORT']}"
        first_member = member_id_for("QH000000")
        volunteer = await cli(
            env,
            tmp_path,
            "volunteers.GetVolunteer",
            {"volunteerId": volunteer_id_for_member(first_member)},
            volunteers_address,
        )
        member = await cli(
            env, tmp_path, "party_orgs.GetMember", {"memberId": first_member}, address
        )
        subsidy = await cli(
            env,
            tmp_path,
            "funds.GetStatement",
            {"accountId": "fund:QH-01-01:subsidy"},
            funds_address,
        )
        trial = await cli(env, tmp_path, "funds.GetTrialBalance", {}, funds_address)
    printed, rest = platform.printed, platform.after_stop

    assert f"party_orgs   grpc {address}" in printed
    assert f"cases        grpc 127.0.0.1:{env['CIVITAS_CASES_GRPC_PORT']}" in printed
    assert "admin token" in printed
    assert f"funds        grpc 127.0.0.1:{env['CIVITAS_FUNDS_GRPC_PORT']}" in printed
    assert (demo.returncode, again.returncode, call.returncode) == (0, 0, 0)
    assert again_out.decode().count("loaded already; left as it is") == 4
    assert "grids                                 686" in demo_out.decode()
    assert call_out.decode().count('"kind": "ADMIN_UNIT_KIND_STREET"') == 12
    assert "大光路街道" in call_out.decode()
    assert "all services stopped" in rest
    assert "residents requests (a year)           200" in demo_out.decode()
    assert "member volunteers                     300" in demo_out.decode()
    assert "activities (past year)                 20" in demo_out.decode()
    assert dispatched["case"]["gridCode"] == "QH-01-01-G01"  # resolved by party_orgs
    assert dispatched["case"]["handler"]
    assert funding["status"] == "FUNDING_STATUS_GRANTED"  # across three processes
    assert funding["amountFen"] == "50000"
    assert volunteer["volunteer"]["memberId"] == first_member
    assert volunteer["volunteer"]["name"] == member["member"]["name"]  # from party_orgs
    assert f"{'party-work subsidies paid':<34} {111:>6}" in demo_out.decode()
    assert f"{'expenditures disbursed':<34} {40:>6}" in demo_out.decode()
    assert f"{'requests for money asked by cases':<34} {3:>6}" in demo_out.decode()
    assert f"{'of them paid by the fund':<34} {3:>6}" in demo_out.decode()  # the saga
    assert int(subsidy["account"]["balanceFen"]) == spread(SUBSIDY_FEN, 111)[0]
    assert int(trial.get("totalFen", 0)) == 0  # proto3 JSON leaves a zero out
    balances = {a["accountId"]: int(a.get("balanceFen", 0)) for a in trial["accounts"]}
    spent = balances["payee:QH:suppliers"]
    left = sum(v for k, v in balances.items() if k.endswith(":special"))
    assert spent > 0
    assert left + spent == 111 * 20_000_000  # every community's 200,000 yuan, paid or kept


async def patient_up(tmp_path: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    """``civitas up`` with its output piped, giving the services 300 s to be ready: a
    test that sees it end sooner sees it end for another reason."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "civitas.cli",
        "up",
        "--ready-within",
        "300",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_civitas_up_stops_everything_when_a_service_exits_before_it_is_ready(
    tmp_path: Path,
) -> None:
    env = service_env(tmp_path, free_port(), free_port())
    with socket.socket() as taken:  # insights' metrics port, held by someone else
        taken.bind(("127.0.0.1", int(env["CIVITAS_INSIGHTS_METRICS_PORT"])))
        taken.listen()
        up = await patient_up(tmp_path, env)
        out, err = await asyncio.wait_for(up.communicate(), 120)

    assert up.returncode == 1
    assert "exited before it was ready: insights (exit code" in err.decode()
    assert "all services stopped" in out.decode()
    assert "Traceback" not in err.decode().split("civitas: exited before")[1]


async def test_ctrl_c_while_the_services_start_stops_them_all_at_once(tmp_path: Path) -> None:
    up = await patient_up(tmp_path, service_env(tmp_path, free_port(), free_port()))
    assert up.stdout is not None
    starting = await asyncio.wait_for(up.stdout.readline(), 120)  # none is ready yet
    up.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(up.communicate(), 120)

    assert starting.decode().startswith("civitas: starting party_orgs, cases")
    assert up.returncode == 0, err.decode()
    assert "all services stopped" in out.decode()
    assert "admin token" not in out.decode()  # it never got as far as ready
    assert "Traceback" not in err.decode()
