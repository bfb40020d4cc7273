"""The checks of a table-driven authorization test: each command against each role,
from another street, and with scope over one of the units it touches but not another.

A service's table names every RPC of its proto (``rows_cover_the_service``): a
command with the roles it admits, a query with :data:`ANY_SIGNED_IN` (any valid
token may read) or the roles it admits. An RPC without a row fails the test, and
so does a row whose roles are not a subset of :class:`Role` (every role then has
an expectation: admitted when listed, refused when not).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import pytest
from google.protobuf.descriptor import ServiceDescriptor

from civitas.chassis.auth import Principal, Role
from civitas.errors import NotAllowed

Run = Callable[[Principal], Awaitable[Any]]
Head = Callable[[], Awaitable[int]]
ANY_SIGNED_IN = frozenset(Role)
"""A query's expectation: every role may read."""


def rows_cover_the_service(rows: Mapping[str, Iterable[Role]], service: ServiceDescriptor) -> None:
    """Every RPC of ``service`` has a row, and every row names one of its RPCs."""
    methods = set(service.methods_by_name)
    assert set(rows) - methods == set(), f"rows for no RPC of {service.name}"
    assert methods - set(rows) == set(), f"RPCs of {service.name} without a row"
    for name, roles in rows.items():
        assert set(roles) <= set(Role), f"{name}: an expectation for no known role"


async def admits_exactly(run: Run, allowed: set[Role], role: Role, head: Head) -> None:
    """An allowed role's command stores its events; any other is refused and stores
    nothing."""
    before = await head()
    principal = Principal("tester", frozenset({role}), ("QH",))
    if role in allowed:
        await run(principal)
        assert await head() > before, "an allowed command stored nothing"
    else:
        with pytest.raises(NotAllowed, match="may not do this"):
            await run(principal)
        assert await head() == before, "a refused command stored events"


async def refuses_another_street(run: Run, allowed: set[Role], head: Head) -> None:
    """An allowed role working for QH-02 is refused a command on QH-01's units."""
    await refuses_scope(run, allowed, ("QH-02",), head)


async def refuses_scope(
    run: Run, allowed: set[Role], scope: tuple[str, ...], head: Head, role: Role | None = None
) -> None:
    """An allowed role whose scope is ``scope`` is refused, and nothing is stored: for a
    command touching several units, ``scope`` covers one of them but not another."""
    role = role or (Role.DISTRICT_ADMIN if Role.DISTRICT_ADMIN in allowed else min(allowed))
    before = await head()
    with pytest.raises(NotAllowed, match=f"works for {', '.join(scope)}"):
        await run(Principal("tester", frozenset({role}), scope))
    assert await head() == before, "a refused command stored events"
