"""Personal data sealed per person; forgetting deletes the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from civitas.eventkit import UNSEALED, SealedName, create_read_model_engine
from civitas.eventkit.personal import ERASED, PersonalDataVault


@pytest.fixture
async def vault(tmp_path: Path) -> PersonalDataVault:
    vault = PersonalDataVault(create_read_model_engine(f"sqlite:///{tmp_path}/vault.db"))
    await vault.setup()
    return vault


async def test_sealed_text_opens_only_for_its_person(vault: PersonalDataVault) -> None:
    sealed = await vault.seal("p1", "王芳 13800001111")

    assert "王芳" not in sealed
    assert await vault.open("p1", sealed) == "王芳 13800001111"
    await vault.seal("p2", "x")
    assert await vault.open("p2", sealed) is None  # another person's key does not open it
    assert await vault.show("p2", sealed) == ERASED  # shown as erased, never an error


async def test_a_forgotten_person_reads_as_erased_and_gets_a_new_id(
    vault: PersonalDataVault,
) -> None:
    person = await vault.person_for("resident", "13800001111")
    assert person == await vault.person_for("resident", "13800001111")
    sealed = await vault.seal(person, "王芳")

    assert await vault.forget(person)

    assert await vault.show(person, sealed) == ERASED
    assert await vault.person_for("resident", "13800001111") != person
    assert not await vault.forget(person)


async def test_the_vaults_own_lookup_key_cannot_be_forgotten(vault: PersonalDataVault) -> None:
    person = await vault.person_for("resident", "13800001111")

    with pytest.raises(ValueError, match="not a person's id"):
        await vault.forget("__index_key__")
    assert await vault.person_for("resident", "13800001111") == person  # the lookup still works


async def test_concurrent_first_use_of_one_phone_gives_one_person_and_one_key(
    vault: PersonalDataVault,
) -> None:
    import asyncio

    people = await asyncio.gather(*(vault.person_for("resident", "13900000000") for _ in range(40)))
    sealed = await asyncio.gather(*(vault.seal(people[0], "x") for _ in range(40)))

    assert len(set(people)) == 1
    assert {await vault.open(people[0], s) for s in sealed} == {"x"}


async def test_names_show_until_their_person_is_forgotten_even_names_written_unsealed(
    vault: PersonalDataVault,
) -> None:
    member = await vault.seal_name("m1", "李明")
    unsealed_member = SealedName("m1", None, "李明")  # schema 1, a member's post
    nobody = SealedName(UNSEALED, None, "王芳")  # schema 1, no member named
    before = [await vault.show_name(n) for n in (member, unsealed_member, nobody, None)]

    await vault.forget("m1")

    assert before == ["李明", "李明", "王芳", ""]
    assert [await vault.show_name(n) for n in (member, unsealed_member, nobody)] == [
        ERASED,
        ERASED,
        "王芳",  # in plaintext in its event: nothing can erase it
    ]
