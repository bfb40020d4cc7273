"""Values a case takes from its callers, each checked whole: payees' accounts, amounts of
money, and the ids of the expenditures a case asks funds to open (unit codes are checked
by ``civitas.geography``)."""

from __future__ import annotations

import re
import uuid

from civitas.errors import InvalidInput
from civitas.geography import UnitKind, unit_code

MAX_FUNDING_FEN = 100_000_000
"""The most one request for money may ask: 1,000,000 yuan, five years of a
community's special fund (200,000 yuan a year). More is a slip of the keyboard."""

_PAYEE_KEY = re.compile(r"[a-z][a-z0-9_.-]{0,40}")
"""The key of an account in funds (``payee:QH:suppliers`` → ``suppliers``)."""

_FUNDING_NAMESPACE = uuid.UUID("0c3a6f1e-5d2b-4f7a-9e8c-1b4d7a2e9f60")
"""Expenditure ids of cases' requests for money: a uuid5 namespace of cases' own. Ids
made from a caller's key (``natural_id``, ``id_for``) live in another namespace, so no
caller of funds can open an expenditure under an id a case will ask for."""


def payee_account(value: str) -> str:
    """A payee's account in funds: ``payee:<unit code>:<key>``, e.g. ``payee:QH:suppliers``."""
    kind, _, rest = (value or "").partition(":")
    owner, _, key = rest.partition(":")
    try:
        unit_code(owner, "owner", *UnitKind)
    except InvalidInput:
        kind = ""
    if kind != "payee" or not _PAYEE_KEY.fullmatch(key):
        raise InvalidInput(
            f"payee_account {value!r} is not a payee's account "
            "(payee:<unit code>:<key>, e.g. payee:QH:suppliers)"
        )
    return value


def funding_amount(amount_fen: int) -> int:
    """A positive whole number of fen, at most :data:`MAX_FUNDING_FEN`."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
        raise InvalidInput(f"amount_fen is a positive whole number of fen, not {amount_fen!r}")
    if amount_fen > MAX_FUNDING_FEN:
        raise InvalidInput(f"amount_fen is at most {MAX_FUNDING_FEN} (1,000,000 yuan)")
    return amount_fen


def expenditure_id_for(case_id: str, number: int) -> str:
    """The expenditure a case's ``number``-th request for money opens in funds."""
    return str(uuid.uuid5(_FUNDING_NAMESPACE, f"{case_id}/{number}"))
