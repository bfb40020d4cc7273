"""Erasure by crypto-shredding: a resident, a volunteer, a party member who holds a
grid post and a committee seat and handles a case, and the case's mediator forgotten
with `civitas forget`; afterwards no plaintext of theirs and no byte of their keys in
any event store, read model, vault or Kafka message, the views say erased, and the
hash chains verify. And the vault alone, on SQLite and PostgreSQL: a forgotten key is
in none of its files (WAL and free pages too, relation files and their indexes), and a
load in flight cannot cache it again."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from civitas.cases.bootstrap import run_cases
from civitas.cases.v1 import cases_pb2 as cpb
from civitas.cases.v1 import cases_pb2_grpc as cpb_grpc
from civitas.chassis.auth import Role
from civitas.errors import RuleViolation
from civitas.eventkit import ManualClock, create_read_model_engine, personal
from civitas.eventkit.personal import ErasureIncomplete, PersonalDataVault, PersonForgotten
from civitas.insights.bootstrap import run_insights
from civitas.party_orgs.v1 import party_orgs_pb2 as po
from civitas.volunteers.domain.volunteers import volunteer_id_for_member
from civitas.volunteers.v1 import volunteers_pb2 as vpb
from tests.conftest import IN_CI, missing_dependency
from tests.support.disk import files_bytes
from tests.support.platform import run_cli
from tests.support.processes import eventually, relayed
from tests.support.volunteers_platform import SECRET, World, platform, report, settings_for

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


def vault_keys(root: Path, people: list[str]) -> list[bytes]:
    """The people's keys in every vault under ``root``, read through a read-only
    connection beside the services' own (which would checkpoint the WAL on closing)."""
    keys = []
    for vault in sorted(root.rglob("vault.db")):
        with contextlib.closing(sqlite3.connect(f"file:{vault}?mode=ro", uri=True)) as conn:
            marks = ",".join("?" * len(people))
            query = f"SELECT key FROM personal_keys WHERE person_id IN ({marks})"
            keys += [bytes(key) for (key,) in conn.execute(query, people)]
    return keys


def keys_of(engine: sa.Engine, people: list[str]) -> list[bytes]:
    """The people's keys as the vault holds them (read before they are forgotten)."""
    query = sa.text("SELECT key FROM personal_keys WHERE person_id IN :people").bindparams(
        sa.bindparam("people", expanding=True)
    )
    with engine.connect() as conn:
        return [bytes(key) for (key,) in conn.execute(query, {"people": people})]


def postgres_relation_files(engine: sa.Engine, tables: list[str]) -> dict[str, Path]:
    """After a CHECKPOINT, the files of the tables, their indexes, TOAST tables and
    TOAST indexes (every fork and segment), by relation file path."""
    query = sa.text(
        """SELECT pg_relation_filepath(r) FROM (
             SELECT t.oid AS r FROM pg_class t WHERE t.oid = CAST(:table AS regclass)
             UNION SELECT indexrelid FROM pg_index WHERE indrelid = CAST(:table AS regclass)
             UNION SELECT reltoastrelid FROM pg_class WHERE oid = CAST(:table AS regclass)
             UNION SELECT indexrelid FROM pg_index i JOIN pg_class t
               ON i.indrelid = t.reltoastrelid WHERE t.oid = CAST(:table AS regclass)
           ) relations WHERE r <> 0"""
    )
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("CHECKPOINT")
            data = Path(str(conn.exec_driver_sql("SHOW data_directory").scalar()))
            paths = [str(p) for t in tables for (p,) in conn.execute(query, {"table": t})]
    except sa.exc.ProgrammingError as refused:  # not allowed: CHECKPOINT, data_directory
        missing_dependency(
            f"PostgreSQL's relation files ({refused.orig}; scripts/postgres-up.sh grants "
            "the test role pg_checkpoint and pg_read_all_settings)"
        )
    return {p: data / p for p in paths}


def relation_bytes(files: dict[str, Path]) -> bytes:
    """Every fork and segment of each relation file (16384, 16384_fsm, 16384.1, …);
    a file gone (a rewritten table's old one, after a checkpoint) holds nothing."""
    found = bytearray()
    for path in files.values():
        name = re.compile(rf"{path.name}(_fsm|_vm|_init)?(\.[0-9]+)?")
        try:
            siblings = [f for f in path.parent.iterdir() if name.fullmatch(f.name)]
            found += b"".join(f.read_bytes() for f in sorted(siblings))
        except PermissionError as refused:
            if IN_CI:
                pytest.fail(f"cannot read PostgreSQL's files ({refused}): run as root")
            pytest.skip(f"cannot read PostgreSQL's files ({refused}): run as root")
    return bytes(found)


def sqlite_files(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.glob("vault.db*")))


async def sealed_people(vault: PersonalDataVault, count: int) -> list[tuple[str, str]]:
    """``count`` residents, each with a name sealed under their own key."""
    people = []
    for n in range(count):
        person = await vault.person_for("resident", f"1380000{n:04d}")
        people.append((person, await vault.seal(person, f"居民{n}")))
    return people


async def test_a_forgotten_key_is_in_no_file_of_the_vault(
    read_model_urls: Callable[[str], str], tmp_path: Path
) -> None:
    url = read_model_urls("vault")
    engine = create_read_model_engine(url)
    try:
        vault = PersonalDataVault(engine)
        await vault.setup()
        people = await sealed_people(vault, 40)
        gone = [people[17], people[-1]]  # the last one's space is not reused by others
        kept = people[3][0]
        gone_keys, [kept_key] = keys_of(engine, [p for p, _ in gone]), keys_of(engine, [kept])
        postgres = url.startswith("postgresql")
        before = postgres_relation_files(engine, ["personal_keys"]) if postgres else {}

        forgotten = [await vault.forget(person) for person, _ in gone]

        if postgres:
            after = postgres_relation_files(engine, ["personal_keys", "personal_index"])
            on_disk = relation_bytes({**before, **after})
        else:
            on_disk = sqlite_files(tmp_path)
            wal = (tmp_path / "vault.db-wal").stat().st_size  # while still open
        opened = [await vault.open(p, sealed) for p, sealed in (*gone, people[3])]
    finally:
        engine.dispose()

    assert forgotten == [True, True]
    assert opened == [None, None, "居民3"]
    assert len(gone_keys) == 2
    assert kept_key in on_disk  # the files searched are the ones that hold keys
    assert [key for key in gone_keys if key in on_disk] == []
    if not postgres:
        assert wal == 0  # checkpointed and truncated


async def test_a_reader_in_the_way_leaves_the_erasure_incomplete_until_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(personal, "SCRUB_WAIT_MS", 50)
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/vault.db")
    reader = sqlite3.connect(tmp_path / "vault.db", isolation_level=None)
    try:
        vault = PersonalDataVault(engine)
        await vault.setup()
        [(person, _)] = await sealed_people(vault, 1)
        [key] = keys_of(engine, [person])
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM personal_keys").fetchone()  # holds the WAL

        with pytest.raises(ErasureIncomplete, match="ask to forget the person again"):
            await vault.forget(person)
        held = await vault.holds_key(person)
        reader.execute("COMMIT")
        again = await vault.forget(person)
        on_disk = sqlite_files(tmp_path)
    finally:
        reader.close()
        engine.dispose()

    assert held is False  # the key was deleted all the same
    assert again is False
    assert key not in on_disk


@pytest.mark.parametrize("use", ["open", "seal"])
async def test_a_load_in_flight_cannot_put_a_forgotten_key_back_into_the_cache(
    tmp_path: Path, use: str
) -> None:
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/vault.db")
    read, resume = threading.Event(), threading.Event()

    def pause(person_id: str) -> None:
        if not person_id.startswith("__"):
            read.set()
            resume.wait(10)

    try:
        sealing = PersonalDataVault(engine)
        await sealing.setup()
        [(person, sealed)] = await sealed_people(sealing, 1)
        vault = PersonalDataVault(engine, after_read=pause)  # its cache is empty
        await vault.setup()
        using = vault.open(person, sealed) if use == "open" else vault.seal(person, "王芳")
        loading = asyncio.create_task(using)
        assert await asyncio.to_thread(read.wait, 10)  # the load has read the key
        forgotten = await vault.forget(person)
        resume.set()
        outcome = (await asyncio.gather(loading, return_exceptions=True))[0]
        shown = await vault.show(person, sealed)
    finally:
        resume.set()
        engine.dispose()

    assert forgotten is True
    if use == "open":
        assert outcome is None  # the load reports the person as erased
    else:
        assert isinstance(outcome, RuleViolation), outcome  # nothing sealed with a dead key
        assert "was forgotten meanwhile" in str(outcome)
    assert shown == "[erased]"  # and cached nothing


async def test_a_forgotten_id_never_gets_a_key_again_not_even_after_a_restart(
    read_model_urls: Callable[[str], str],
) -> None:
    url = read_model_urls("vault")
    engine = create_read_model_engine(url)
    try:
        vault = PersonalDataVault(engine)
        await vault.setup()
        [(person, name), (kept, _)] = await sealed_people(vault, 2)
        held = await vault.holds_key(person)  # a command checks, then seals: a forget
        forgotten = await vault.forget(person)  # lands in between (cases' _sealing)
        with pytest.raises(PersonForgotten, match=f"person {person} has been forgotten"):
            await vault.seal(person, "note about 302室")
        again = await vault.forget(person)  # the scrub again, and the tombstone kept
        engine.dispose()
        restarted = PersonalDataVault(create_read_model_engine(url))  # an empty cache
        await restarted.setup()
        with pytest.raises(PersonForgotten):
            await restarted.seal_name(person, "张三")
        shown, other = await restarted.show(person, name), await restarted.seal(kept, "x")
        rows = keys_of(restarted.engine, [person])
        restarted.engine.dispose()
    finally:
        engine.dispose()

    assert (held, forgotten, again) == (True, True, False)
    assert rows == []  # no key was made for the forgotten id
    assert shown == "[erased]"
    assert other.startswith("pd1:")  # others' keys are made and used as before


async def test_a_forget_from_another_vault_wins_over_a_key_being_made(tmp_path: Path) -> None:
    """Two vaults on one database (two processes): one is making the person's first key
    when the other forgets them. The key made is deleted, or the seal is refused."""
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/vault.db")
    other_engine = create_read_model_engine(f"sqlite:///{tmp_path}/vault.db")
    read, resume = threading.Event(), threading.Event()
    person = f"resident-{uuid.uuid4()}"

    def pause(person_id: str) -> None:
        if person_id == person:
            read.set()
            resume.wait(10)

    try:
        vault = PersonalDataVault(engine, after_read=pause)
        await vault.setup()
        other = PersonalDataVault(other_engine)
        await other.setup()
        sealing = asyncio.create_task(vault.seal(person, "王芳"))
        assert await asyncio.to_thread(read.wait, 10)  # the new key is committed
        await other.forget(person)
        resume.set()
        await asyncio.gather(sealing, return_exceptions=True)
        with pytest.raises(PersonForgotten):
            await other.seal(person, "王芳")
        rows = keys_of(engine, [person])
    finally:
        resume.set()
        engine.dispose()
        other_engine.dispose()

    assert rows == []


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
            keys = vault_keys(
                tmp_path, [case.resident_id, volunteer_person, member, mediator_person]
            )
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
            while_running = files_bytes(tmp_path)  # WAL files are removed on closing
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
    assert len(keys) == 6  # the member's in three vaults, each other person's in one
    for found in (on_kafka, while_running, on_disk):
        assert [key for key in keys if key in found] == []
        for plaintext in (*RESIDENT, *VOLUNTEER, MEMBER_NAME, MEDIATOR):
            assert plaintext.encode() not in found, plaintext
