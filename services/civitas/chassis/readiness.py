"""A replica's readiness: what the work it leads says of its health.

The rule: a replica says SERVING unless a work it holds the lease of is failing, which
is when that work has failed :data:`FAILING_AFTER` times in a row (a run that lasted
:data:`STEADY_SECONDS` starts the count again, and makes the work healthy again). A
relay that refuses a foreign history or topic fails each time it starts, so it is
failing within seconds. A replica that leads nothing, because another replica holds
its leases, says SERVING: it serves commands, and its reads wait for read models in
the shared database whoever applies them. A lease lost takes its work's failure with
it: the work's health is then its new holder's.

Which replica is being composed is a context variable: the composition root's
:func:`civitas.chassis.service.infrastructure` sets it, and the works started in the
same composition (relay, projections, process managers, supervisor, anchoring) report
to it without each composition root passing it along."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from prometheus_client import Counter, Gauge

FAILING_AFTER = 3
STEADY_SECONDS = 10.0

LEASE_HELD = Gauge("civitas_lease_held", "1 while this replica holds the work's lease", ["work"])
LEASE_ACQUIRED = Counter(
    "civitas_lease_acquired_total", "Times this replica took the work's lease", ["work"]
)
LEASE_LOST = Counter(
    "civitas_lease_lost_total",
    "Times this replica lost the work's lease while holding it (its session failed); its "
    "work was stopped at once",
    ["work"],
)
WORK_FAILING = Gauge(
    "civitas_leased_work_failing",
    "1 while a work this replica leads is failing (the replica says NOT_SERVING)",
    ["work"],
)


class Readiness:
    """The failing works of one replica, by name, each with why."""

    def __init__(self) -> None:
        self._failing: dict[str, str] = {}

    def failing(self, work: str, why: str) -> None:
        """``work`` keeps failing: the replica is not ready."""
        self._failing[work] = why
        WORK_FAILING.labels(work).set(1)

    def healthy(self, work: str) -> None:
        """``work`` runs (or no longer runs here)."""
        if self._failing.pop(work, None) is not None:
            WORK_FAILING.labels(work).set(0)

    @property
    def serving(self) -> bool:
        """Whether the replica is ready: no work it leads is failing."""
        return not self._failing

    @property
    def why_not(self) -> dict[str, str]:
        """The failing works and their last errors."""
        return dict(self._failing)


_COMPOSING: ContextVar[Readiness | None] = ContextVar("civitas_readiness", default=None)


@contextlib.contextmanager
def composing(readiness: Readiness) -> Iterator[Readiness]:
    """Make ``readiness`` the one the works started inside report to."""
    token = _COMPOSING.set(readiness)
    try:
        yield readiness
    finally:
        _COMPOSING.reset(token)


def current_readiness() -> Readiness:
    """The readiness of the replica being composed; outside a composition (a tool, a
    test running one runner) a readiness of its own that nobody reads."""
    return _COMPOSING.get() or Readiness()
