"""What of a case is sealed and what stays clear: the address cut below the building,
and the fields a timeline shows by the rule, in old events as in new ones."""

from __future__ import annotations

import pytest

from civitas.eventkit import SealedName
from civitas.sealing import clear_details, sealed_fields, split_address


@pytest.mark.parametrize(
    ("address", "clear", "rest"),
    [
        ("大光路南2区5栋", "大光路南2区5栋", ""),
        ("大光路12号3栋2单元302室", "大光路12号3栋", "2单元302室"),
        ("大光路12号302室", "大光路12号", "302室"),
        ("大光路12号302", "大光路12号", "302"),
        ("大光路12号5楼", "大光路12号", "5楼"),
        ("金陵小区A座1201", "金陵小区A座", "1201"),
        ("大光路东1区3栋 2-302", "大光路东1区3栋", " 2-302"),
        ("长乐路7号楼3层", "长乐路7号楼", "3层"),
        ("双塘路", "双塘路", ""),
        ("302室", "", "302室"),
        # a marker inside a place name is not one: only right after a number
        ("星座花园3栋502室", "星座花园3栋", "502室"),
        ("座山路8号5栋301", "座山路8号5栋", "301"),
        ("星座花园", "星座花园", ""),
        ("号楼街8号2单元", "号楼街8号", "2单元"),
        ("万达楼盘3栋1201", "万达楼盘3栋", "1201"),
        ("千户村3栋201", "千户村3栋", "201"),
        ("长乐路七号楼3层", "长乐路七号楼", "3层"),
        ("金陵小区Ｂ座801", "金陵小区Ｂ座", "801"),
        # a room's dash in any form, a room named in Latin, a bare room number at the end
        ("幸福里小区2－302", "幸福里小区", "2－302"),
        ("幸福里小区2—302", "幸福里小区", "2—302"),
        ("幸福里小区2‐302", "幸福里小区", "2‐302"),
        ("幸福里小区2‑302", "幸福里小区", "2‑302"),
        ("幸福里小区２-３０２", "幸福里小区", "２-３０２"),
        ("幸福里Room 302", "幸福里", "Room 302"),
        ("金陵小区 1702", "金陵小区 ", "1702"),
    ],
)
def test_an_address_is_clear_down_to_the_building_and_sealed_below(
    address: str, clear: str, rest: str
) -> None:
    assert split_address(address) == (clear, rest)


def test_a_new_registration_shows_its_sealed_fields_under_their_persons() -> None:
    data = {
        "address": "大光路12号3栋",
        "address_rest_ciphertext": "pd1:r",
        "description_ciphertext": "pd1:d",
        "description": None,
        "address_rest": None,
        "resident_id": "resident-1",
        "resident_name_ciphertext": "pd1:n",
        "request_digest_ciphertext": "pd1:x",
    }

    assert sealed_fields(data, "resident-1") == {
        "address_rest": SealedName("resident-1", "pd1:r"),
        "description": SealedName("resident-1", "pd1:d"),
        "resident_name": SealedName("resident-1", "pd1:n"),
    }
    assert clear_details(data) == {"address": "大光路12号3栋", "resident_id": "resident-1"}


def test_an_old_registration_shows_its_plaintext_only_by_the_rule() -> None:
    data = {"address": "大光路12号3栋2单元302室", "description": "楼道灯坏了", "resident_id": "r"}

    assert sealed_fields(data, "r") == {
        "address_rest": SealedName("r", None, "2单元302室"),
        "description": SealedName("r", None, "楼道灯坏了"),
    }
    assert clear_details(data) == {"address": "大光路12号3栋", "resident_id": "r"}


def test_a_name_is_sealed_under_the_person_the_event_names_and_old_names_are_left_out() -> None:
    new = {"handler_person": "holder-1", "handler_ciphertext": "pd1:h", "handler": None}
    old = {"handler_person": "unsealed", "handler_ciphertext": None, "handler": "王芳"}

    assert sealed_fields(new, "r") == {"handler": SealedName("holder-1", "pd1:h")}
    assert sealed_fields(old, "r") == {}
    assert clear_details(old) == {"handler_person": "unsealed"}
