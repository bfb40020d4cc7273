"""A funds world for tests of its rules: two communities of one street with their
special funds, a payee, a department's budget, and expenditures at each step."""

from __future__ import annotations

from dataclasses import dataclass

from civitas.chassis.auth import Caller, Principal, Role
from civitas.eventkit import EventStore, ManualClock
from civitas.funds.application import Funds
from civitas.funds.domain.accounts import YUAN, AccountKind

R = Role
PAYEE = "payee:QH:yinfa"
FUND = "fund:QH-01-01:special"
NEIGHBOUR_FUND = "fund:QH-01-02:special"
DEPARTMENT = "source:QH:civil-affairs"
SETUP = Caller(Principal("setup-admin", frozenset({R.DISTRICT_ADMIN}), ("QH",)), "setup")
CLERK = Caller(Principal("clerk", frozenset({R.COMMUNITY_STAFF}), ("QH-01-01",)), "setup")
SECRETARY = Caller(Principal("secretary", frozenset({R.PARTY_SECRETARY}), ("QH-01-01",)), "s")


@dataclass
class World:
    """Two communities of one street with their special funds, a payee, a department's
    budget, and expenditures at each step of their flow."""

    app: Funds
    store: EventStore
    requested: str
    approved: str
    reserved: str
    big_half_approved: str  # above the threshold, approved by the community only


async def build_world(store: EventStore, clock: ManualClock) -> World:
    app = Funds(store, clock, street_threshold_fen=20_000 * YUAN)
    for community in ("QH-01-01", "QH-01-02"):
        await app.allocate_year(SETUP, community, clock.now().year, 0)
    await app.open_account(SETUP, AccountKind.PAYEE, "QH", "yinfa", "银发餐桌服务社")
    await app.open_account(SETUP, AccountKind.SOURCE, "QH", "civil-affairs", "区民政局")
    await app.open_account(SETUP, AccountKind.FUND, "QH-01-01", "subsidy", "党组织工作补助经费")

    async def expenditure(yuan: int, approvals: int = 0, reserve: bool = False) -> str:
        requested = await app.request_expenditure(
            CLERK, "QH-01-01", PAYEE, yuan * YUAN, "助餐服务", "合同", None
        )
        if approvals:
            await app.approve(SECRETARY, requested.id)
        if reserve:
            await app.reserve(SETUP, requested.id)
        return requested.id

    return World(
        app,
        store,
        requested=await expenditure(500),
        approved=await expenditure(600, approvals=1),
        reserved=await expenditure(700, approvals=1, reserve=True),
        big_half_approved=await expenditure(30_000, approvals=1),
    )
