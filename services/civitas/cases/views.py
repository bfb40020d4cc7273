"""cases' queries (cosmicpython's ``views``): a case as a caller sees it, its timeline
and sealed text, and the lists the case index answers. Personal data is shown here,
by the one rule over the case's community (``may_see_personal_data``): names, phone,
the address below the building, the description, notes and mediation records show
to callers who work for it, ``[hidden]`` to others, ``[erased]`` once forgotten."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from civitas.chassis.auth import HIDDEN, Caller, Principal, may_see_personal_data
from civitas.errors import InvalidInput
from civitas.eventkit import SealedName
from civitas.eventkit.personal import ERASED, PersonalDataVault
from civitas.sealing import LEGACY_TEXT, clear_details, sealed_fields

from .application import Cases
from .case_index import CaseFilter, CaseQueries
from .domain.case import Case, Channel, Deadline, FundingStatus, Urgency
from .lifecycle import Status

MAX_PAGE = 500


async def shown(vault: PersonalDataVault, sealed: SealedName | None, visible: bool) -> str:
    """One sealed value for a view: "" when there is none, ``[hidden]`` to a caller who
    may not see it, ``[erased]`` once its person is forgotten."""
    if sealed is None:
        return ""
    if not visible:
        return HIDDEN
    return await vault.show_name(sealed)


async def shown_texts(
    data: Mapping[str, Any], owner: str, vault: PersonalDataVault, visible: bool
) -> dict[str, str]:
    """An event's sealed free text by field, each shown by the rule (plaintext,
    ``[hidden]`` or ``[erased]``): what only the service holding the keys can say."""
    return {
        field: await shown(vault, sealed, visible)
        for field, sealed in sealed_fields(data, owner).items()
        if field in LEGACY_TEXT
    }


async def shown_details(
    data: Mapping[str, Any], owner: str, vault: PersonalDataVault, visible: bool
) -> dict[str, Any]:
    """An event's data for a timeline: clear fields, and each piece of sealed text shown
    by the rule (plaintext, ``[hidden]`` or ``[erased]``); names are left out."""
    return {**clear_details(data), **await shown_texts(data, owner, vault, visible)}


@dataclass(frozen=True, slots=True)
class EventTexts:
    """The sealed free text one event of a case carries, by field, as a caller sees it."""

    version: int
    event_id: str
    type: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One event of a case's timeline: clear fields, and sealed text by the rule."""

    version: int
    type: str
    occurred_at: datetime
    actor: str
    correlation_id: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Funding:
    """Money a case asked for from the community fund, and what became of it."""

    expenditure_id: str
    status: FundingStatus
    amount_fen: int
    payee_account: str
    purpose: str
    reason: str


@dataclass(frozen=True, slots=True)
class CaseView:
    """A case as one caller sees it, a read model (the edge gets no aggregate): the
    case's clear facts, and each piece of personal data shown by the rule ("" where the
    case has none)."""

    case_id: str
    status: Status
    channel: Channel
    urgency: Urgency
    category: str
    community_code: str
    address: str
    description: str
    resident_id: str
    resident_name: str
    resident_phone: str
    registered_at: datetime | None
    dispatch_due: datetime | None
    resolution_due: datetime | None
    grid_code: str
    handler: str
    handler_person_id: str
    satisfaction: int
    merged_into_case_id: str
    overdue: bool
    supervision_notices: list[Deadline]
    timeline: list[TimelineEntry]
    funding: list[Funding]


class CaseViews:
    """Reads for cases' edge; lists catch up with the case index first, so a caller
    reads their own writes."""

    def __init__(
        self, app: Cases, queries: CaseQueries, index_ready: Callable[[], Awaitable[None]]
    ) -> None:
        self.app = app
        self.queries = queries
        self.index_ready = index_ready

    async def case(self, caller: Caller, case_id: str) -> CaseView:
        """A case with its timeline (for anyone signed in)."""
        return await self.seen(caller.principal, await self.app.get(caller, case_id), True)

    async def page(
        self, caller: Caller, where: CaseFilter, size: int, token: str | None
    ) -> tuple[list[CaseView], str | None]:
        """A page of cases, newest first, and the next page's token (None at the end)."""
        if not 1 <= size <= MAX_PAGE:
            raise InvalidInput(f"page_size is from 1 to {MAX_PAGE}, not {size}")
        await self.index_ready()
        now = self.app.clock.now()
        ids, next_token = await asyncio.to_thread(self.queries.page, where, now, size, token)
        found = [await self.app.get(caller, i) for i in ids]
        return [await self.seen(caller.principal, c) for c in found], next_token

    async def texts(self, caller: Caller, case_id: str) -> list[EventTexts]:
        """The sealed free text of each of the case's events that carries some, shown to
        ``caller`` by the rule (for anyone signed in)."""
        case = await self.app.get(caller, case_id)
        visible = may_see_personal_data(caller.principal, case.community_code)
        found = []
        for event in await self.app.history(case):
            fields = await shown_texts(event.data, case.resident_id, self.app.vault, visible)
            if fields:
                found.append(
                    EventTexts(event.stream_version, str(event.event_id), event.type, fields)
                )
        return found

    async def seen(self, principal: Principal, case: Case, timeline: bool = False) -> CaseView:
        """``case`` as ``principal`` may see it (with its timeline when asked)."""
        visible = may_see_personal_data(principal, case.community_code)
        vault, resident = self.app.vault, case.resident_id
        return CaseView(
            case_id=case.id,
            status=case.status,
            channel=case.channel,
            urgency=case.urgency,
            category=case.kind or "",
            community_code=case.community_code,
            address=case.address + await self._rest(case.address_rest, visible),
            description=await shown(vault, case.description, visible),
            resident_id=resident,
            resident_name=await shown(
                vault, SealedName(resident, case.resident_name_ciphertext), visible
            ),
            resident_phone=await shown(
                vault, SealedName(resident, case.resident_phone_ciphertext), visible
            ),
            registered_at=case.registered_at,
            dispatch_due=case.dispatch_due,
            resolution_due=case.resolution_due,
            grid_code=case.grid_code or "",
            handler=await shown(vault, case.handler, visible),
            handler_person_id=case.handler.person_id if case.handler else "",
            satisfaction=case.satisfaction or 0,
            merged_into_case_id=case.merged_into or "",
            overdue=bool(case.breached(self.app.clock.now())),
            supervision_notices=sorted(case.notices),
            timeline=await self._timeline(case, visible) if timeline else [],
            funding=[
                Funding(
                    r.expenditure_id, r.status, r.amount_fen, r.payee_account, r.purpose, r.reason
                )
                for r in case.funding.values()
            ],
        )

    async def _timeline(self, case: Case, visible: bool) -> list[TimelineEntry]:
        return [
            TimelineEntry(
                version=event.stream_version,
                type=event.type,
                occurred_at=event.occurred_at,
                actor=event.actor or "",
                correlation_id=event.correlation_id or "",
                details=await shown_details(event.data, case.resident_id, self.app.vault, visible),
            )
            for event in await self.app.history(case)
        ]

    async def _rest(self, rest: SealedName | None, visible: bool) -> str:
        """The sealed rest of an address, after its clear part: as given, or ``[hidden]``
        or ``[erased]`` after a space."""
        text = await shown(self.app.vault, rest, visible)
        return f" {text}" if text in (HIDDEN, ERASED) else text
