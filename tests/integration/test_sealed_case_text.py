"""A case's address below the building, description, notes and mediation records are
sealed under the resident's key: cases and insights (gRPC and HTTP) show them to the
case's community only, ``[erased]`` after a forget, and no file holds them in the clear;
a case written before sealing reads by the same rule."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from civitas.cases.v1 import cases_pb2 as pb
from civitas.chassis.auth import Role
from civitas.chassis.settings import ServiceSettings
from civitas.eventkit import ManualClock, NewEvent, StreamState
from civitas.insights.bootstrap import run_insights
from civitas.insights.v1 import insights_pb2 as ipb
from civitas.insights.v1 import insights_pb2_grpc as ipb_grpc
from civitas.privacy.v1 import privacy_pb2, privacy_pb2_grpc
from tests.support.cases_platform import World, platform, registration, settings_for
from tests.support.disk import files_bytes

ROOM = "2单元1702室"
TEXTS = {
    "description": "楼道灯坏了-ZX7731",
    "note": "已联系物业-NT4417",
    "summary": "双方到场-SM2290",
    "terms": "物业三日内修复-TM8802",
}
OLD = {"address": "大光路12号5栋3单元401室", "description": "旧诉求-OLD6612"}


async def handled_case(world: World) -> str:
    """Registered with a room number, dispatched, noted, mediated to an agreement."""
    staff, s = world.token(Role.COMMUNITY_STAFF, scope=("QH-01-01",)), world.stub
    address = f"大光路12号3栋{ROOM}"
    reply = await s.RegisterCase(
        registration(address=address, description=TEXTS["description"]), metadata=staff
    )
    case_id = reply.case.case_id
    for call, request in [
        (
            s.ClassifyCase,
            pb.ClassifyCaseRequest(case_id=case_id, category="设施", urgency=pb.URGENCY_NORMAL),
        ),
        (s.FileCase, pb.FileCaseRequest(case_id=case_id)),
        (s.DispatchCase, pb.DispatchCaseRequest(case_id=case_id)),
        (s.AcceptCase, pb.AcceptCaseRequest(case_id=case_id, accepted_by="王芳")),
        (s.AddProgressNote, pb.AddProgressNoteRequest(case_id=case_id, note=TEXTS["note"])),
        (s.OpenMediation, pb.OpenMediationRequest(case_id=case_id, mediator="陈")),
        (
            s.RecordMediationSession,
            pb.RecordMediationSessionRequest(case_id=case_id, summary=TEXTS["summary"]),
        ),
        (
            s.ConcludeMediation,
            pb.ConcludeMediationRequest(case_id=case_id, agreed=True, terms=TEXTS["terms"]),
        ),
    ]:
        await call(request, metadata=staff)  # type: ignore[operator]
    return case_id


async def old_case(world: World, like: str) -> str:
    """A case as cases wrote it before sealing (schema 1), by the resident of ``like``:
    the whole address and the description in plaintext."""
    case_id = str(uuid.uuid4())
    new = (await world.running.store.read_stream(f"case-{like}"))[0].data
    names = ("resident_name_ciphertext", "resident_phone_ciphertext")
    times = ("registered_at", "dispatch_due", "resolution_due")
    registered = {
        **{k: new[k] for k in ("channel", "community_code", "urgency", "resident_id")},
        **OLD,
        **{k: new[k] for k in (*names, *times)},
    }
    await world.running.store.append(
        f"case-{case_id}", [NewEvent("CaseRegistered", registered)], StreamState.NO_STREAM
    )
    return case_id


def details(entries: object, event_type: str) -> dict[str, str]:
    return next(json.loads(e.details_json) for e in entries if e.type == event_type)  # type: ignore[attr-defined]


def seen(case: pb.Case) -> dict[str, Any]:
    """What a caller sees of a case: its address, description, handler and sealed text."""
    types = {e.type for e in case.timeline}
    return {
        "address": case.address,
        "description": case.description,
        "handler": case.handler,
        **{k: details(case.timeline, t)[k] for k, t in TYPES.items() if t in types},
    }


TYPES = {"note": "ProgressNoted", "summary": "MediationSessionHeld", "terms": "MediationConcluded"}


def insights_settings(tmp_path: Path, world: World | None, **extra: str) -> ServiceSettings:
    """insights, finding cases' API (``world``'s cases, else where nothing listens), and
    told of a vault of cases that does not exist: it must never need one."""
    cases = f"127.0.0.1:{world.running.server.port}" if world else "127.0.0.1:1"
    return settings_for(
        "insights",
        tmp_path,
        CIVITAS_CASES_ADDRESS=cases,
        CIVITAS_CASES_VAULT_URL=f"sqlite:///{tmp_path}/{NO_VAULT}/vault.db",
        **extra,
    )


NO_VAULT = "no-cases-vault-here"


async def test_sealed_case_text_shows_to_the_community_only_and_is_erased_everywhere(
    tmp_path: Path, clock: ManualClock
) -> None:
    ours = ("QH-01-01",)
    async with (
        platform(tmp_path, clock) as world,
        run_insights(insights_settings(tmp_path, world), port=0, http_port=0) as insights,
        grpc.aio.insecure_channel(f"127.0.0.1:{insights.server.port}") as channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{world.running.server.port}") as cases,
    ):
        stub = ipb_grpc.InsightsServiceStub(channel)
        case_id = await handled_case(world)
        got = (
            await world.stub.GetCase(
                pb.GetCaseRequest(case_id=case_id), metadata=world.token(Role.AUDITOR)
            )
        ).case
        resident = got.resident_id
        legacy_id = await old_case(world, case_id)

        async def views(scope: tuple[str, ...]) -> list[dict[str, Any]]:
            token = world.token(Role.COMMUNITY_STAFF, scope=scope)
            found: list[dict[str, Any]] = []
            for wanted in (case_id, legacy_id):
                request = pb.GetCaseRequest(case_id=wanted)
                found.append(seen((await world.stub.GetCase(request, metadata=token)).case))
            for runner in insights.projections:
                await runner.wait_until_caught_up()
            timeline = await stub.GetCaseTimeline(
                ipb.GetCaseTimelineRequest(case_id=case_id), metadata=token
            )
            found.append({k: details(timeline.timeline.entries, t)[k] for k, t in TYPES.items()})
            url = f"http://127.0.0.1:{insights.http_port}/api/cases/{legacy_id}/timeline"
            headers = {"Authorization": token[0][1]}
            async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as reply:
                entry = (await reply.json())["timeline"]["entries"][0]
            found.append(json.loads(entry["details_json"]))
            return found

        shown, other = await views(ours), await views(("QH-01-02",))
        forgotten = await privacy_pb2_grpc.PrivacyServiceStub(cases).ForgetPerson(
            privacy_pb2.ForgetPersonRequest(person_id=resident),
            metadata=world.token(Role.DISTRICT_ADMIN),
        )
        erased = await views(ours)
        before = await world.head()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await world.stub.AddProgressNote(
                pb.AddProgressNoteRequest(case_id=case_id, note="又一条"),
                metadata=world.token(Role.COMMUNITY_STAFF, scope=ours),
            )
        stored = await world.head() - before
    on_disk = files_bytes(tmp_path)
    assert not (tmp_path / NO_VAULT).exists()  # insights opened no vault of cases

    assert shown[0] == {
        "address": f"大光路12号3栋{ROOM}",
        "description": TEXTS["description"],
        "handler": "王芳",
        **{k: TEXTS[k] for k in TYPES},
    }
    assert (shown[1]["address"], shown[1]["description"]) == (OLD["address"], OLD["description"])
    assert shown[2] == {k: TEXTS[k] for k in TYPES}
    assert (shown[3]["address"], shown[3]["address_rest"]) == ("大光路12号5栋", "3单元401室")
    assert other[0] == {
        "address": "大光路12号3栋 [hidden]",
        "description": "[hidden]",
        "handler": "[hidden]",
        **dict.fromkeys(TYPES, "[hidden]"),
    }
    assert (other[1]["address"], other[1]["description"]) == ("大光路12号5栋 [hidden]", "[hidden]")
    assert other[2] == dict.fromkeys(TYPES, "[hidden]")
    assert (other[3]["address"], other[3]["description"]) == ("大光路12号5栋", "[hidden]")
    assert forgotten.forgotten
    assert (refused.value.code(), stored) == (grpc.StatusCode.FAILED_PRECONDITION, 0)
    assert erased[0] == {
        "address": "大光路12号3栋 [erased]",
        "description": "[erased]",
        "handler": "王芳",  # the handler is not the resident
        **dict.fromkeys(TYPES, "[erased]"),
    }
    assert (erased[1]["address"], erased[1]["description"]) == (
        "大光路12号5栋 [erased]",
        "[erased]",
    )
    assert erased[2] == dict.fromkeys(TYPES, "[erased]")
    assert (erased[3]["address_rest"], erased[3]["description"]) == ("[erased]", "[erased]")
    assert "大光路12号3栋".encode() in on_disk  # the clear part is there: we looked
    for text in (ROOM, *TEXTS.values()):
        assert text.encode() not in on_disk, text


async def test_a_timeline_shows_sealed_text_as_unavailable_when_cases_does_not_answer(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with platform(tmp_path, clock) as world:
        case_id = await handled_case(world)
        staff = world.token(Role.COMMUNITY_STAFF, scope=("QH-01-01",))
        async with (
            run_insights(insights_settings(tmp_path, None), port=0, http_port=0) as insights,
            grpc.aio.insecure_channel(f"127.0.0.1:{insights.server.port}") as channel,
        ):
            for runner in insights.projections:
                await runner.wait_until_caught_up()
            timeline = await ipb_grpc.InsightsServiceStub(channel).GetCaseTimeline(
                ipb.GetCaseTimelineRequest(case_id=case_id), metadata=staff
            )
        entries = timeline.timeline.entries
        events = await world.running.store.read_stream(f"case-{case_id}")

    assert [e.type for e in entries] == [e.type for e in events]  # the timeline answers
    registered = details(entries, "CaseRegistered")
    assert (registered["address"], registered["address_rest"], registered["description"]) == (
        "大光路12号3栋",
        "[unavailable]",
        "[unavailable]",
    )
    assert {k: details(entries, t)[k] for k, t in TYPES.items()} == dict.fromkeys(
        TYPES, "[unavailable]"
    )
    for entry in entries:
        assert "ciphertext" not in entry.details_json
