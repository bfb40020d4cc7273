"""The administrative geography's codes, shared by every service.

District → street → community → grid: ``QH``, ``QH-03``, ``QH-03-07``,
``QH-03-07-G02``. A code names its kind and its parent, and a scope over a code
covers every code below it.
"""

from __future__ import annotations

import enum
import re

from civitas.errors import InvalidInput


class UnitKind(enum.StrEnum):
    DISTRICT = "district"
    STREET = "street"
    COMMUNITY = "community"
    GRID = "grid"


# ASCII only ([0-9], not \d, which takes full-width and Arabic-Indic digits too),
# matched whole: a look-alike or a trailing newline is another, invalid code.
_CODE_SHAPES = [
    (UnitKind.GRID, re.compile(r"(?P<parent>[A-Z]{2,4}-[0-9]{2}-[0-9]{2})-G[0-9]{2,3}")),
    (UnitKind.COMMUNITY, re.compile(r"(?P<parent>[A-Z]{2,4}-[0-9]{2})-[0-9]{2}")),
    (UnitKind.STREET, re.compile(r"(?P<parent>[A-Z]{2,4})-[0-9]{2}")),
    (UnitKind.DISTRICT, re.compile(r"[A-Z]{2,4}")),
]


def parse_unit_code(code: str) -> tuple[UnitKind, str | None]:
    """The kind of unit a code names, and its parent's code."""
    for kind, shape in _CODE_SHAPES:
        match = shape.fullmatch(code or "") if isinstance(code, str) else None
        if match:
            return kind, match.groupdict().get("parent")
    raise InvalidInput(
        f"unit code {code!r} is not QH (district), QH-03 (street), QH-03-07 (community) "
        "or QH-03-07-G02 (grid)"
    )


def street_of(code: str) -> str | None:
    """The street a community or grid code lies in (None for the district)."""
    kind, _ = parse_unit_code(code)
    return None if kind is UnitKind.DISTRICT else "-".join(code.split("-")[:2])


def community_of(code: str) -> str | None:
    """The community a community or grid code lies in (None above communities)."""
    kind, parent = parse_unit_code(code)
    if kind is UnitKind.COMMUNITY:
        return code
    return parent if kind is UnitKind.GRID else None


def unit_code(code: str, field: str, *kinds: UnitKind) -> str:
    """``code`` when it names a unit of one of ``kinds`` (read whole, as
    :func:`parse_unit_code` reads codes), else :class:`InvalidInput` naming ``field``."""
    try:
        kind: UnitKind | None = parse_unit_code(code)[0]
    except InvalidInput:
        kind = None
    if kind not in kinds:
        names = " or ".join(k.value for k in kinds)
        raise InvalidInput(f"{field} {code!r} is not a {names}'s code")
    return code


def checked_community(code: str, field: str = "community_code") -> str:
    """``code`` when it names a community (``QH-03-07``): the one check every service
    makes of a community's code."""
    return unit_code(code, field, UnitKind.COMMUNITY)


def grid_of(community: str, grid: str, field: str = "grid_code") -> str:
    """``grid`` when it is a grid of ``community``, else :class:`InvalidInput`."""
    unit_code(grid, field, UnitKind.GRID)
    if community_of(grid) != community:
        raise InvalidInput(f"{field} {grid!r} is not a grid of {community}")
    return grid
