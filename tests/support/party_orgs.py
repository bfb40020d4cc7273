"""A small district for party_orgs tests: two streets with a community each, a grid, orgs
across both streets, members."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from civitas.chassis.auth import Caller, Principal, Role
from civitas.eventkit import EventStore, InMemoryEventStore, ManualClock, create_read_model_engine
from civitas.eventkit.personal import PersonalDataVault
from civitas.party_orgs.application import PartyOrgs
from civitas.party_orgs.domain.orgs import OrgKind, SeatRole

ADMIN = Caller(Principal("admin", frozenset({Role.DISTRICT_ADMIN}), ("QH",)), "setup")


def caller(*roles: Role, scope: tuple[str, ...] = ("QH",), subject: str = "tester") -> Caller:
    return Caller(Principal(subject, frozenset(roles), scope), "test")


@dataclass
class World:
    app: PartyOrgs
    store: EventStore
    street_committee: str
    community_committee: str
    grid_branch: str
    organ: str
    organ_branch: str
    member: str
    transferring: str
    pairing: str
    empty: str
    unpaired_organ: str
    other_committee: str  # the community committee of QH-02-01, under QH-02's street committee
    other_organ: str  # an organ's general branch bound to the street QH-02, unpaired
    straddling: str  # a branch bound to QH-01-01 under QH-02's organ branch


async def build_world(tmp_path: Path, clock: ManualClock) -> World:
    store = InMemoryEventStore()  # commands and their retries, not the storage
    vault = PersonalDataVault(create_read_model_engine(f"sqlite:///{tmp_path}/vault.db"))
    await vault.setup()
    app = PartyOrgs(store, vault, clock)
    for code, name in [
        ("QH", "秦淮区"),
        ("QH-01", "大光路街道"),
        ("QH-02", "双塘街道"),
        ("QH-01-01", "大光路社区"),
        ("QH-02-01", "双塘社区"),
    ]:
        await app.register_unit(ADMIN, code, name, 1000, [])
    await app.register_unit(ADMIN, "QH-01-01-G01", "第一网格", 800, ["大光路1号", "大光路3号"])
    await app.assign_post(ADMIN, "QH-01-01-G01", "网格长", "王芳", None, "巡查、收集诉求")
    street = await app.found_org(
        ADMIN, OrgKind.STREET_WORKING_COMMITTEE, "大光路街道大工委", None, "QH-01"
    )
    community = await app.found_org(
        ADMIN, OrgKind.COMMUNITY_COMMITTEE, "大光路社区大党委", street.id, "QH-01-01"
    )
    grid = await app.found_org(
        ADMIN, OrgKind.GRID_BRANCH, "第一网格支部", community.id, "QH-01-01-G01"
    )
    organ = await app.found_org(
        ADMIN, OrgKind.ORGAN_GENERAL_BRANCH, "区财政局机关总支", None, "QH-01"
    )
    branch = await app.found_org(ADMIN, OrgKind.BRANCH, "财政局第一支部", organ.id, "QH-01")
    member = await app.admit_member(ADMIN, "M-001", "李明", grid.id, True, "区财政局")
    moving = await app.admit_member(ADMIN, "M-002", "赵丽", grid.id, False, None)
    await app.start_transfer(ADMIN, moving.id, branch.id)
    pairing = await app.form_pairing(ADMIN, organ.id, community.id)
    await app.seat(ADMIN, community.id, SeatRole.SECRETARY, "张书记", None, None)
    empty = await app.found_org(ADMIN, OrgKind.BRANCH, "空支部", organ.id, "QH-01")
    unpaired = await app.found_org(
        ADMIN, OrgKind.ORGAN_GENERAL_BRANCH, "区民政局机关总支", None, "QH-01"
    )
    other_street = await app.found_org(
        ADMIN, OrgKind.STREET_WORKING_COMMITTEE, "双塘街道大工委", None, "QH-02"
    )
    other = await app.found_org(
        ADMIN, OrgKind.COMMUNITY_COMMITTEE, "双塘社区大党委", other_street.id, "QH-02-01"
    )
    other_organ = await app.found_org(
        ADMIN, OrgKind.ORGAN_GENERAL_BRANCH, "双塘街道机关总支", None, "QH-02"
    )
    straddling = await app.found_org(
        ADMIN, OrgKind.BRANCH, "驻社区支部", other_organ.id, "QH-01-01"
    )
    ids = (street, community, grid, organ, branch, member, moving, pairing, empty, unpaired)
    ids += (other, other_organ, straddling)
    return World(app, store, *(entity.id for entity in ids))
