"""Commands that change several aggregates: a retry completes what a crash left half done."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from civitas.chassis.auth import Role
from civitas.errors import AlreadyExists, InvalidInput, NotAllowed
from civitas.eventkit import ManualClock
from civitas.party_orgs.domain.orgs import OrgKind
from tests.support.party_orgs import ADMIN, World, build_world, caller


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    built = await build_world(tmp_path, clock)
    yield built
    await built.store.close()


async def test_a_transfer_stopped_before_the_release_is_completed_by_a_retry(world: World) -> None:
    app, member = world.app, world.transferring
    target = (await app.members.get(member)).transfer.to_org_id  # type: ignore[union-attr]
    await app.orgs.update(target, lambda o: o.enroll(member))  # the steps done before the crash
    await app.members.update(member, lambda m: m.receive_transfer(app.clock.now()))

    await app.receive_transfer(ADMIN, member)

    assert member not in (await app.orgs.get(world.grid_branch)).members
    assert member in (await app.orgs.get(target)).members


async def test_a_dissolution_stopped_before_the_detach_is_completed_by_a_retry(
    world: World,
) -> None:
    await world.app.orgs.update(world.empty, lambda o: o.dissolve("合并"))

    await world.app.dissolve_org(ADMIN, world.empty, "合并")

    assert world.empty not in (await world.app.orgs.get(world.organ)).children


async def test_a_move_stopped_before_the_detach_is_completed_by_a_retry(world: World) -> None:
    app = world.app
    new_parent = await app.orgs.get(world.community_committee)
    await app.orgs.update(world.empty, lambda o: o.move_under(new_parent, []))

    await app.move_org(ADMIN, world.empty, world.community_committee)

    assert world.empty not in (await app.orgs.get(world.organ)).children
    assert world.empty in (await app.orgs.get(world.community_committee)).children


async def test_moving_under_a_parent_out_of_scope_is_refused(world: World) -> None:
    with pytest.raises(NotAllowed, match="not for QH-02-01"):
        await world.app.move_org(
            caller(Role.STREET_STAFF, scope=("QH-01",)), world.empty, world.other_committee
        )


async def test_a_refused_admission_leaves_no_one_on_the_roster(world: World) -> None:
    before = set((await world.app.orgs.get(world.grid_branch)).members)

    with pytest.raises(InvalidInput, match="employer"):
        await world.app.admit_member(ADMIN, "M-900", "孙", world.grid_branch, True, None)

    assert set((await world.app.orgs.get(world.grid_branch)).members) == before


async def test_founding_the_same_org_again_finds_it_instead_of_making_a_twin(world: World) -> None:
    first = await world.app.found_org(ADMIN, OrgKind.BRANCH, "第二支部", world.organ, "QH-01")
    again = await world.app.found_org(ADMIN, OrgKind.BRANCH, "第二支部", world.organ, "QH-01")

    assert again.id == first.id
    assert (await world.app.orgs.get(world.organ)).children >= {first.id}


async def test_a_member_number_names_one_admission(world: World) -> None:
    first = await world.app.admit_member(ADMIN, "M-300", "钱红", world.grid_branch, False, None)
    stored = await world.store.head_position()

    again = await world.app.admit_member(ADMIN, "M-300", "钱红", world.grid_branch, False, None)
    for name, working, employer in [("钱虹", False, None), ("钱红", True, "区财政局")]:
        with pytest.raises(AlreadyExists, match="M-300 is admitted already"):
            await world.app.admit_member(ADMIN, "M-300", name, world.grid_branch, working, employer)

    assert again.id == first.id
    assert await world.store.head_position() == stored
