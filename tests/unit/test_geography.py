"""Unit codes are ASCII and matched whole: a look-alike is another, invalid code."""

from __future__ import annotations

import re

import pytest

from civitas.errors import InvalidInput
from civitas.geography import UnitKind, checked_community, grid_of, parse_unit_code


@pytest.mark.parametrize(
    ("code", "kind", "parent"),
    [
        ("QH", UnitKind.DISTRICT, None),
        ("QH-03", UnitKind.STREET, "QH"),
        ("QH-03-07", UnitKind.COMMUNITY, "QH-03"),
        ("QH-03-07-G02", UnitKind.GRID, "QH-03-07"),
    ],
)
def test_a_code_names_its_kind_and_parent(code: str, kind: UnitKind, parent: str | None) -> None:
    assert parse_unit_code(code) == (kind, parent)


@pytest.mark.parametrize(
    "code",
    [
        "QH-01-02\n",  # `$` would take a trailing newline
        " QH-01-02",
        "QH-01-02 ",
        "QH-0１",  # a full-width digit: `\d` would take it
        "QH-٠1",  # an Arabic-Indic digit
        "ＱＨ",  # full-width letters
        "QН",  # a Cyrillic Н
        "QH-01-02\x00",
        "qh",
        "",
    ],
)
def test_a_look_alike_or_padded_code_is_refused(code: str) -> None:
    with pytest.raises(InvalidInput, match="unit code"):
        parse_unit_code(code)


@pytest.mark.parametrize("code", ["QH", "QH-01", "QH-01-01-G01", "QH-01-0１", "QH-01-01\n", ""])
def test_only_a_communitys_code_passes_as_one_and_the_refusal_names_the_field(code: str) -> None:
    assert checked_community("QH-01-01") == "QH-01-01"
    with pytest.raises(InvalidInput, match=re.escape(f"owner {code!r} is not a community's code")):
        checked_community(code, "owner")


def test_a_grid_of_another_community_is_refused() -> None:
    assert grid_of("QH-01-01", "QH-01-01-G02") == "QH-01-01-G02"
    with pytest.raises(InvalidInput, match="grid_code 'QH-01-02-G01' is not a grid of QH-01-01"):
        grid_of("QH-01-01", "QH-01-02-G01")
