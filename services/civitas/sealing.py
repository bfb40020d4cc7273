"""What of a case is sealed personal data and what stays clear: written once, read by
cases (its events and views) and insights (its timelines).

Sealed under the resident's key: their name and phone, the address below the building
(:func:`split_address`), the description, progress notes and mediation records;
handlers', acceptors' and mediators' names under their own person's key. Clear: the
community, grid, the address down to the building (what ``ResolveGrid`` matches),
category, statuses and times. In an event, ``<field>_ciphertext`` is sealed under the
person ``<field>_person`` names, else under the record's own person (the case's
resident). Events of older schemas carried some of these fields in plaintext: views
show those by the same rule, and ``[erased]`` once their person is forgotten.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from civitas.eventkit import SealedName

CIPHERTEXT = "_ciphertext"
NOT_SHOWN = frozenset({"request_digest"})
"""Sealed, but no view shows it: a digest that compares a retried request."""
UNAVAILABLE = "[unavailable]"
"""Sealed text another view could not have opened for its caller: the service holding
the keys did not answer in time."""
LEGACY_NAMES = frozenset({"handler", "by", "mediator"})
"""Names schema-1 events of cases carried in plaintext: views leave them out."""
LEGACY_TEXT = ("description", "note", "summary", "terms", "address_rest")
"""The sealed free text of a case, which timelines show by the rule (names they leave
out: the case shows them once). Schema-1 events carried it in plaintext (the address
rest is cut from their whole ``address``): shown the same way, erased with the
resident."""

_NUMBER = r"[0-9０-９A-Za-zＡ-Ｚａ-ｚ]+"
"""What names a building, unit, floor or room: digits or Latin letters (``3``, ``A``,
``B2``), ASCII or full width. A marker counts only right after one, so the same
character inside a place name (星座花园, 座山路, 号楼 in a name, 楼盘, 单元 in
一单元…) is not a marker."""
_CHINESE_NUMBER = r"[一二三四五六七八九十]+"
_DASH = r"[-－—–‐‑]"
_BUILDING = re.compile(rf"(?:{_NUMBER}\s*(?:栋|幢|座|号楼)|{_CHINESE_NUMBER}\s*(?:栋|幢|号楼))")
_BELOW_BUILDING = re.compile(
    rf"(?:{_NUMBER}|{_CHINESE_NUMBER})\s*(?:单元|室|层|楼|户|号房)"
    rf"|[0-9０-９]+\s*{_DASH}\s*[0-9０-９]+"
    r"|(?i:room|rm)\.?\s*[0-9０-９]+"
)
_STREET_NUMBER = re.compile(r"[0-9０-９]+号")
_TRAILING_ROOM = re.compile(r"[0-9０-９]{3,}\s*$")
"""A bare number of three or more digits ending an address that names no building or
street number (``金陵小区 1702``): a room."""


def split_address(address: str) -> tuple[str, str]:
    """An address as (clear, rest), ``clear + rest == address``. Clear runs through the
    building (the first 栋, 幢, 座 or 号楼 right after a number: ``3栋``, ``A座``,
    ``七号楼``), else through the street number (the first ``<digits>号``), else the
    whole address but a bare room number ending it (``金陵小区 1702``); it stops
    earlier at a unit, floor or room (``2单元``, ``5楼``, ``302室``, ``2-302`` with any
    dash, ``Room 302``). A marker inside a name (星座, 座山路, 楼盘) is not one. The rest
    is sealed. Grid prefixes reach down to the building at most, so the clear part is
    what ``ResolveGrid`` needs."""
    building = _BUILDING.search(address) or _STREET_NUMBER.search(address)
    trailing = None if building else _TRAILING_ROOM.search(address)
    cut = building.end() if building else trailing.start() if trailing else len(address)
    below = _BELOW_BUILDING.search(address)
    if below and below.start() < cut:
        cut = below.start()
    return address[:cut], address[cut:]


def legacy_fields(data: Mapping[str, Any]) -> dict[str, str]:
    """Free text an event of an older schema carried in plaintext, by field."""
    found = {f: data[f] for f in LEGACY_TEXT if data.get(f) and not data.get(f"{f}{CIPHERTEXT}")}
    if _whole_address(data):
        rest = split_address(data["address"])[1]
        if rest:
            found["address_rest"] = rest
    return found


def sealed_fields(data: Mapping[str, Any], owner: str) -> dict[str, SealedName]:
    """Every field a view shows by the rule for personal data, by its name: sealed ones
    under their person (``owner`` unless ``<field>_person`` names one), and the
    plaintext of older schemas under ``owner``."""
    fields = {
        key.removesuffix(CIPHERTEXT): SealedName(
            data.get(f"{key.removesuffix(CIPHERTEXT)}_person") or owner, value
        )
        for key, value in data.items()
        if key.endswith(CIPHERTEXT) and value and key.removesuffix(CIPHERTEXT) not in NOT_SHOWN
    }
    for field, text in legacy_fields(data).items():
        fields[field] = SealedName(owner, None, text)
    return fields


def clear_details(data: Mapping[str, Any]) -> dict[str, Any]:
    """An event's data without anything sealed or personal: what every caller sees."""
    hidden = {*LEGACY_NAMES, *LEGACY_TEXT}
    details = {k: v for k, v in data.items() if not k.endswith(CIPHERTEXT) and k not in hidden}
    if _whole_address(data):
        details["address"] = split_address(data["address"])[0]
    return details


def kept_for_timeline(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a read model keeps of an event for a timeline: its clear fields, and its
    sealed text as ciphertext (plaintext only where an old schema wrote it so); no
    names, no other ciphertext."""
    text = {f"{f}{CIPHERTEXT}" for f in LEGACY_TEXT}
    return {
        k: v
        for k, v in data.items()
        if k not in LEGACY_NAMES and (not k.endswith(CIPHERTEXT) or k in text)
    }


def details_with(data: Mapping[str, Any], texts: Mapping[str, str]) -> dict[str, Any]:
    """An event's data for a timeline whose sealed text the service holding the keys
    opened (``texts``, by field, as :func:`shown_texts` gives it): clear fields, and
    each sealed field from ``texts``, :data:`UNAVAILABLE` where it is missing. Names
    are left out; no ciphertext or stored plaintext is ever shown."""
    details = clear_details(data)
    for field in text_fields(data):
        details[field] = texts.get(field, UNAVAILABLE)
    return details


def text_fields(data: Mapping[str, Any]) -> list[str]:
    """The fields of sealed free text an event carries (sealed, or plaintext of an older
    schema): what a timeline shows by the rule."""
    return [field for field in sealed_fields(data, "") if field in LEGACY_TEXT]


def _whole_address(data: Mapping[str, Any]) -> bool:
    """A registration of schema 1, which kept the whole address in the clear."""
    return isinstance(data.get("address"), str) and f"address_rest{CIPHERTEXT}" not in data
