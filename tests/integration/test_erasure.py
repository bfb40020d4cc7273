"""Erasure by crypto-shredding: a resident, a volunteer, a party member who holds a
grid post and a committee seat and handles a case, and the case's mediator forgotten
with `civitas forget`; afterwards no plaintext of theirs in any event store, read
model, vault or Kafka message, the views say erased, and the hash chains verify."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from civitas.cases.bootstrap import run_cases
from civitas.cases.v1 import cases_pb2 as cpb
from civitas.cases.v1 import cases_pb2_grpc as cpb_grpc
from civitas.chassis.auth import Role
from civitas.eventkit import ManualClock
from civitas.insights.bootstrap import run_insights
from civitas.party_orgs.v1 import party_orgs_pb2 as po
from civitas.volunteers.domain.volunteers import volunteer_id_for_member
from civitas.volunteers.v1 import volunteers_pb2 as vpb
from tests.integration.test_volunteers import SECRET, World, platform, report, settings_for
from tests.support.platform import run_cli
from tests.support.processes import eventually, relayed

ROOT = Path(__file__).resolve().parents[2]
RESIDENT = ("周敏", "13800001111")
VOLUNTEER = ("赵小红", "13900002222")
MEMBER_NAME = "李明"  # the seed's member
MEDIATOR = "陈调解员"


async def civitas(*args: str) -> str:
    code, out = await run_cli(list(args), SECRET)
    assert code == 0, out
    return out


async def kafka_bytes(bootstrap: str, namespace: str) -> bytes:
    """Every message (key, value, headers) of the namespace's topics, from the start to
    their ends now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if t.startswith(f"{namespace}.")]
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(topics) if topics else []
        finally:
            await admin.close()
        partitions = [
            TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
        ]
        if not partitions:
            return b""
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        seen = bytearray()
        while any([await consumer.position(p) < end for p, end in ends.items()]):
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for r in records:
                    seen += (r.key or b"") + (r.value or b"")
                    seen += b"".join(k.encode() + v for k, v in r.headers)
        return bytes(seen)
    finally:
        await consumer.stop()


async def hold_office_and_handle(
    world: World, channel: grpc.aio.Channel, case_id: str, member: str
) -> None:
    """The member takes the grid's lead post and its branch's secretary seat, then the
    case: dispatched to them, accepted in their name, mediated by a 五老 mediator."""
    admin = world.token(Role.DISTRICT_ADMIN)
    party, cases = world.party_orgs, cpb_grpc.CasesServiceStub(channel)
    await party.VacateGridPost(
        po.VacateGridPostRequest(grid_code="QH-01-01-G01", post="网格长"), metadata=admin
    )
    await party.AssignGridPost(
        po.AssignGridPostRequest(
            grid_code="QH-01-01-G01",
            post="网格长",
            holder=MEMBER_NAME,
            member_id=member,
            duty="巡查、收集诉求",
        ),
        metadata=admin,
    )
    await party.SeatCommitteeMember(
        po.SeatCommitteeMemberRequest(
            org_id=world.ids["grid"],
            seat=po.CommitteeSeat(
                role=po.SEAT_ROLE_SECRETARY, holder=MEMBER_NAME, member_id=member
            ),
        ),
        metadata=admin,
    )
    await cases.ClassifyCase(
        cpb.ClassifyCaseRequest(case_id=case_id, category="公共设施", urgency=cpb.URGENCY_NORMAL),
        metadata=admin,
    )
    await cases.FileCase(cpb.FileCaseRequest(case_id=case_id), metadata=admin)
    await cases.DispatchCase(
        cpb.DispatchCaseRequest(case_id=case_id, grid_code="QH-01-01-G01"), metadata=admin
    )
    await cases.AcceptCase(
        cpb.AcceptCaseRequest(case_id=case_id, accepted_by=MEMBER_NAME), metadata=admin
    )
    await cases.OpenMediation(
        cpb.OpenMediationRequest(case_id=case_id, mediator=MEDIATOR), metadata=admin
    )


async def dispatch_another(
    channel: grpc.aio.Channel, admin: list[tuple[str, str]]
) -> grpc.aio.AioRpcError:
    cases = cpb_grpc.CasesServiceStub(channel)
    case = (
        await cases.RegisterCase(
            cpb.RegisterCaseRequest(
                channel=cpb.CHANNEL_GRID_PATROL,
                community_code="QH-01-01",
                address="大光路1号",
                description="井盖松动",
                urgency=cpb.URGENCY_NORMAL,
                resident_name="吴",
                resident_phone="13700003333",
            ),
            metadata=admin,
        )
    ).case
    await cases.ClassifyCase(
        cpb.ClassifyCaseRequest(case_id=case.case_id, category="市政", urgency=cpb.URGENCY_NORMAL),
        metadata=admin,
    )
    await cases.FileCase(cpb.FileCaseRequest(case_id=case.case_id), metadata=admin)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cases.DispatchCase(
            cpb.DispatchCaseRequest(case_id=case.case_id, grid_code="QH-01-01-G01"),
            metadata=admin,
        )
    return refused.value


def files_bytes(root: Path) -> bytes:
    """Every file the services wrote: event stores, read models, vaults, WAL files."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@pytest.mark.kafka
async def test_forgotten_people_leave_no_plaintext_anywhere_and_the_chains_still_verify(
    tmp_path: Path, clock: ManualClock, kafka_bootstrap: str
) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    extra = {"CIVITAS_KAFKA_BOOTSTRAP": kafka_bootstrap, "CIVITAS_KAFKA_NAMESPACE": namespace}
    async with platform(tmp_path, clock, extra=extra) as world:
        peers = {**extra, "CIVITAS_PARTY_ORGS_ADDRESS": f"127.0.0.1:{world.party.server.port}"}
        async with (
            run_cases(settings_for("cases", tmp_path, peers), clock=clock, port=0) as cases,
            run_insights(settings_for("insights", tmp_path, extra), port=0, http_port=0),
            grpc.aio.insecure_channel(f"127.0.0.1:{cases.server.port}") as channel,
        ):
            admin = world.token(Role.DISTRICT_ADMIN)
            case = (
                await cpb_grpc.CasesServiceStub(channel).RegisterCase(
                    cpb.RegisterCaseRequest(
                        channel=cpb.CHANNEL_HOTLINE_12345,
                        community_code="QH-01-01",
                        address="大光路12号",
                        description="楼道灯坏了",
                        urgency=cpb.URGENCY_NORMAL,
                        resident_name=RESIDENT[0],
                        resident_phone=RESIDENT[1],
                    ),
                    metadata=admin,
                )
            ).case
            volunteer = (
                await world.stub.RegisterVolunteer(
                    vpb.RegisterVolunteerRequest(
                        name=VOLUNTEER[0], phone=VOLUNTEER[1], community_code="QH-01-01"
                    ),
                    metadata=admin,
                )
            ).volunteer
            member = await report(world)  # a working member: a volunteer profile follows
            member_volunteer = volunteer_id_for_member(member)
            await hold_office_and_handle(world, channel, case.case_id, member)
            mediation = await cases.store.read_stream(f"case-{case.case_id}")
            mediator = next(e for e in mediation if e.type == "MediationOpened")
            mediator_person = mediator.data["mediator_person"]

            async def profiled() -> bool:
                return bool(
                    await world.volunteers.store.read_stream(f"volunteer-{member_volunteer}")
                )

            await eventually(profiled, "the member's volunteer profile", seconds=60)
            registered = await world.volunteers.store.read_stream(
                f"volunteer-{volunteer.volunteer_id}"
            )
            volunteer_person = registered[0].data["person_id"]
            case_events = await cases.store.read_stream(f"case-{case.case_id}")
            sealed_name = case_events[0].data["resident_name_ciphertext"]

            async def published() -> bool:
                return sealed_name.encode() in await kafka_bytes(kafka_bootstrap, namespace)

            await eventually(published, "the case on Kafka", seconds=60)
            addresses = [
                "--party-orgs",
                f"127.0.0.1:{world.party.server.port}",
                "--cases",
                f"127.0.0.1:{cases.server.port}",
                "--volunteers",
                f"127.0.0.1:{world.volunteers.server.port}",
            ]
            said = [
                await civitas("forget", person, *addresses)
                for person in (case.resident_id, volunteer_person, member, mediator_person)
            ]
            again = await civitas("forget", case.resident_id, *addresses)
            get_case = await cpb_grpc.CasesServiceStub(channel).GetCase(
                cpb.GetCaseRequest(case_id=case.case_id), metadata=admin
            )
            shown_volunteers = [
                (
                    await world.stub.GetVolunteer(
                        vpb.GetVolunteerRequest(volunteer_id=v), metadata=admin
                    )
                ).volunteer.name
                for v in (volunteer.volunteer_id, member_volunteer)
            ]
            shown_member = (
                await world.party_orgs.GetMember(
                    po.GetMemberRequest(member_id=member), metadata=admin
                )
            ).member.name
            grid = await world.party_orgs.GetAdminUnit(
                po.GetAdminUnitRequest(code="QH-01-01-G01"), metadata=admin
            )
            branch = await world.party_orgs.GetPartyOrg(
                po.GetPartyOrgRequest(org_id=world.ids["grid"]), metadata=admin
            )
            unseated = await world.party_orgs.UnseatCommitteeMember(
                po.UnseatCommitteeMemberRequest(
                    org_id=world.ids["grid"], role=po.SEAT_ROLE_SECRETARY, person_id=member
                ),
                metadata=admin,
            )
            refused = await dispatch_another(channel, admin)  # to the forgotten holder's grid
            member_again = await civitas("forget", member, *addresses)
            reports = [
                await store.verify()
                for store in (world.party.store, cases.store, world.volunteers.store)
            ]
            for service, store in (
                ("party_orgs", world.party.store),
                ("cases", cases.store),
                ("volunteers", world.volunteers.store),
            ):
                await relayed(store, service, namespace)  # all of it on Kafka, to be searched
        on_kafka = await kafka_bytes(kafka_bootstrap, namespace)
    on_disk = files_bytes(tmp_path)

    assert case.resident_name == RESIDENT[0]  # the views showed them while known
    assert volunteer.name == VOLUNTEER[0]
    assert "cases        key deleted" in said[0]
    assert "volunteers   key deleted" in said[1]
    assert "party_orgs   key deleted" in said[2]
    assert "volunteers   key deleted" in said[2]  # the member's key in volunteers' vault
    assert "cases        no key held" in again
    assert (get_case.case.resident_name, get_case.case.resident_phone) == ("[erased]", "[erased]")
    assert shown_volunteers == ["[erased]", "[erased]"]
    assert shown_member == "[erased]"
    assert "cases        key deleted" in said[2]  # the handler's name, sealed by cases
    assert "cases        key deleted" in said[3]
    assert (get_case.case.handler, get_case.case.handler_person_id) == ("[erased]", member)
    assert [(p.post, p.holder, p.person_id) for p in grid.unit.posts] == [
        ("网格长", "[erased]", member)
    ]
    assert [(s.holder, s.person_id) for s in branch.org.seats] == [("[erased]", member)]
    assert list(unseated.org.seats) == []  # by person id, now that the name is gone
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "nobody on its posts" in (refused.details() or "")
    assert "cases        no key held" in member_again  # the refusal sealed nothing anew
    assert all(r.intact and r.events > 0 for r in reports)
    assert sealed_name.encode() in on_kafka  # the ciphertext is there: we looked in the right place
    assert sealed_name.encode() in on_disk
    for plaintext in (*RESIDENT, *VOLUNTEER, MEMBER_NAME, MEDIATOR):
        assert plaintext.encode() not in on_kafka, plaintext
        assert plaintext.encode() not in on_disk, plaintext
