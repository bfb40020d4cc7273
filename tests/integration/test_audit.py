"""Auditors' tools on a real service: history at a moment or a revision over gRPC,
hash-chain verification over gRPC and from the command line, one byte tampered."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from civitas.audit.v1 import audit_pb2 as apb
from civitas.audit.v1 import audit_pb2_grpc as apb_grpc
from civitas.cases.v1 import cases_pb2 as pb
from civitas.chassis.auth import Role
from civitas.eventkit import ManualClock
from tests.support.cases_platform import SECRET, platform, register
from tests.support.platform import run_cli

ROOT = Path(__file__).resolve().parents[2]
C = grpc.StatusCode


async def civitas(tmp_path: Path, *args: str) -> tuple[int, str]:
    return await run_cli([*args, "--var", str(tmp_path)], SECRET)


async def test_an_auditor_sees_a_case_as_it_was_and_who_changed_it(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with platform(tmp_path, clock) as world:
        case_id = await register(world)
        await asyncio.sleep(0.05)  # the store stamps events with the real time
        staff = world.token(Role.COMMUNITY_STAFF)
        await world.stub.ClassifyCase(
            pb.ClassifyCaseRequest(case_id=case_id, category="公共设施", urgency=pb.URGENCY_LOW),
            metadata=[*staff, ("x-correlation-id", "classify-1")],
        )
        audit = apb_grpc.AuditServiceStub(
            grpc.aio.insecure_channel(f"127.0.0.1:{world.running.server.port}")
        )
        auditor = world.token(Role.AUDITOR)
        stream = f"case-{case_id}"
        now = await audit.GetHistory(apb.GetHistoryRequest(stream_id=stream), metadata=auditor)
        at_zero = await audit.GetHistory(
            apb.GetHistoryRequest(stream_id=stream, version=0), metadata=auditor
        )
        registered_at = now.events[0].occurred_at.ToDatetime(tzinfo=UTC)
        then = Timestamp()
        then.FromDatetime(registered_at + timedelta(milliseconds=1))
        at_first = await audit.GetHistory(
            apb.GetHistoryRequest(stream_id=stream, as_of=then), metadata=auditor
        )
        refusals = []
        for request, metadata in [
            (apb.GetHistoryRequest(stream_id=stream), staff),
            (apb.GetHistoryRequest(stream_id="Case 1"), auditor),
            (apb.GetHistoryRequest(stream_id="account-x"), auditor),
            (apb.GetHistoryRequest(stream_id="case-nobody"), auditor),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await audit.GetHistory(request, metadata=metadata)
            refusals.append((refused.value.code(), refused.value.details()))
        chains = await audit.VerifyChains(apb.VerifyChainsRequest(), metadata=auditor)

    assert json.loads(at_first.state_json)["status"] == "registered"
    assert [e.type for e in at_first.events] == ["CaseRegistered"]
    assert at_zero.state_json == at_first.state_json
    assert json.loads(now.state_json)["status"] == "classified"
    assert json.loads(now.state_json)["kind"] == "公共设施"
    classified = now.events[-1]
    assert (classified.type, classified.actor, classified.correlation_id) == (
        "CaseClassified",
        "staff",
        "classify-1",
    )
    assert "周敏" not in now.events[0].data_json  # the resident's name stays sealed
    assert [code for code, _ in refusals] == [
        C.PERMISSION_DENIED,
        C.INVALID_ARGUMENT,
        C.INVALID_ARGUMENT,
        C.NOT_FOUND,
    ]
    assert "auditor" in refusals[0][1]
    assert (chains.events, len(chains.broken)) == (2, 0)


async def test_audit_verify_names_the_case_whose_stored_byte_was_changed(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with platform(tmp_path, clock) as world:
        case_id = await register(world)
        other = await register(world)
    before, intact = await civitas(tmp_path, "audit", "verify", "--service", "cases")
    with sqlite3.connect(tmp_path / "cases" / "events.db") as conn:
        conn.execute(  # one byte of the address: 大光路12号 → 大光路13号
            "UPDATE events SET data = replace(data, '12号', '13号') "
            "WHERE stream_id = ? AND stream_version = 0",
            (f"case-{case_id}",),
        )
    after, found = await civitas(tmp_path, "audit", "verify", "--service", "cases")
    shown, history = await civitas(tmp_path, "audit", "history", f"case-{other}")

    assert (before, after, shown) == (0, 1, 0)
    assert "cases: 2 events in 2 streams: intact" in intact
    assert f"first broken link: case-{case_id} revision 0" in found
    assert "does not follow from the stored content" in found
    assert f"case-{other}" not in found
    assert f"case-{other} at revision 0 (cases)" in history
    assert "CaseRegistered" in history
