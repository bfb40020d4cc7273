"""The checks of a table-driven authorization test: each command against each role,
and from another street."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from civitas.chassis.auth import Principal, Role
from civitas.errors import NotAllowed

Run = Callable[[Principal], Awaitable[Any]]
Head = Callable[[], Awaitable[int]]


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
    role = Role.DISTRICT_ADMIN if Role.DISTRICT_ADMIN in allowed else min(allowed)
    before = await head()
    with pytest.raises(NotAllowed, match="works for QH-02"):
        await run(Principal("tester", frozenset({role}), ("QH-02",)))
    assert await head() == before, "a refused command stored events"
