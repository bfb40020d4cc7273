"""Values cases takes from callers, checked whole, and the ids it makes for funds."""

from __future__ import annotations

import pytest

from civitas.cases.domain.values import (
    MAX_FUNDING_FEN,
    expenditure_id_for,
    funding_amount,
    payee_account,
)
from civitas.chassis.requests import id_for
from civitas.errors import InvalidInput
from civitas.eventkit import natural_id
from civitas.geography import UnitKind, grid_of, unit_code


@pytest.mark.parametrize(
    "account", ["payee:QH:suppliers", "payee:QH-01:yinfa", "payee:QH-01-01:wuye.2026"]
)
def test_a_payees_account_is_kind_owner_and_key(account: str) -> None:
    assert payee_account(account) == account


@pytest.mark.parametrize(
    "account",
    [
        "",
        "payee",
        "payee:QH",
        "payee:QH:",
        "payee::suppliers",
        "payee:QH:suppliers:more",
        "payee:QH:Suppliers",
        "payee:QH: suppliers",
        "payee:ＱＨ:suppliers",
        "payee:QH-０１:suppliers",
        "fund:QH-01-01:special",
        "PAYEE:QH:suppliers",
        "payee:QH:" + "k" * 42,
    ],
)
def test_anything_else_is_not_a_payees_account(account: str) -> None:
    with pytest.raises(InvalidInput, match="not a payee's account"):
        payee_account(account)


@pytest.mark.parametrize(
    "code", ["QH-０１-０２", "QH-٠١-٠٢", "ＱＨ-01-02", "QH-01-02\n", " QH-01-02", "QH-01", ""]
)
def test_a_community_code_is_ascii_and_whole(code: str) -> None:
    with pytest.raises(InvalidInput, match="not a community's code"):
        unit_code(code, "community_code", UnitKind.COMMUNITY)


def test_a_grid_must_lie_in_the_community() -> None:
    assert grid_of("QH-01-01", "QH-01-01-G02") == "QH-01-01-G02"
    with pytest.raises(InvalidInput, match="not a grid of QH-01-01"):
        grid_of("QH-01-01", "QH-01-02-G01")
    with pytest.raises(InvalidInput, match="not a grid's code"):
        grid_of("QH-01-01", "QH-01-01-G０１")


@pytest.mark.parametrize("amount", [0, -1, True, 1.5, MAX_FUNDING_FEN + 1])
def test_an_amount_is_whole_positive_fen_up_to_the_bound(amount: object) -> None:
    with pytest.raises(InvalidInput, match="amount_fen"):
        funding_amount(amount)  # type: ignore[arg-type]


def test_an_expenditure_id_lies_outside_every_namespace_a_caller_can_derive_ids_in() -> None:
    """funds opens a case's expenditure under the id the case names: an id any caller
    could derive through the shared namespace (natural_id, request ids) could be taken
    in funds first."""
    case_id = "9b2f3c1e-0000-4000-8000-000000000001"
    made = expenditure_id_for(case_id, 1)

    assert made == expenditure_id_for(case_id, 1)
    assert made != expenditure_id_for(case_id, 2)
    assert made not in {
        str(natural_id("case-funding", case_id, 1)),
        str(natural_id("expenditure", case_id, 1)),
        id_for("expenditure", case_id),
    }
