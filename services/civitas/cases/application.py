"""cases commands: authorize against the case's community, load, one domain call, save."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from civitas.chassis.auth import Caller, Principal, Role, authorize
from civitas.errors import InvalidInput, NotFound
from civitas.eventkit import (
    AggregateNotFound,
    Clock,
    ConcurrencyError,
    EventStore,
    Repository,
    SealedName,
    natural_id,
)
from civitas.eventkit.ids import new_uuid
from civitas.eventkit.personal import PersonalDataVault
from civitas.geography import UnitKind, parse_unit_code
from civitas.validation import required_text

from .domain.case import Case, Channel, DeadlinePolicy, Urgency
from .grids import Assignment, GridResolver

R = Role
INTAKE = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF, R.GRID_WORKER, R.SERVICE}
DISPATCHERS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF}
HANDLERS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF, R.GRID_WORKER, R.PARTY_SECRETARY}
FOLLOW_UP = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF}
IMPORTERS = {R.DISTRICT_ADMIN, R.SERVICE}
SUPERVISOR = Principal("supervisor", frozenset({R.SERVICE}), ("QH",))
FUNDS_OUTCOMES = Principal("funds-outcomes", frozenset({R.SERVICE}), ("QH",))
_PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,19}$")


@dataclass(frozen=True)
class HistoricalCase:
    """A case as an earlier system recorded it, to be imported with its own times."""

    channel: Channel
    community_code: str
    address: str
    description: str
    urgency: Urgency
    resident_name: str
    resident_phone: str
    received_at: datetime
    category: str
    grid_code: str | None = None
    dispatched_at: datetime | None = None
    resolution: str | None = None
    resolved_at: datetime | None = None
    satisfaction: int | None = None
    closed_at: datetime | None = None
    source_id: str | None = None

    def check_times(self, now: datetime) -> None:
        """The steps' times must be given for the steps taken, in order, and past."""
        steps = [
            ("received_at", self.received_at),
            ("dispatched_at", self.dispatched_at),
            ("resolved_at", self.resolved_at),
            ("closed_at", self.closed_at),
        ]
        if bool(self.grid_code) != (self.dispatched_at is not None):
            raise InvalidInput("a grid_code and dispatched_at come together")
        if self.resolved_at is not None and not self.resolution:
            raise InvalidInput("resolved_at needs the resolution")
        if self.satisfaction and not self.resolution:
            raise InvalidInput("a satisfaction needs the resolution it rates")
        if self.resolution and (self.resolved_at is None or not self.grid_code):
            raise InvalidInput("a resolution needs resolved_at and the grid it was handled by")
        if self.closed_at and not self.satisfaction:
            raise InvalidInput("closed_at needs the resident's satisfaction")
        given = [(name, at) for name, at in steps if at is not None]
        for (name, at), (later_name, later) in itertools.pairwise(given):
            if later < at:
                raise InvalidInput(f"{later_name} is before {name}")
        if given[-1][1] > now:
            raise InvalidInput(f"{given[-1][0]} is in the future")

    def replay_onto(
        self,
        case: Case,
        assignment: Assignment | None,
        handler: SealedName | None,
        policy: DeadlinePolicy,
    ) -> None:
        case.classify(self.category, self.urgency, policy)
        if assignment is None or handler is None or self.dispatched_at is None:
            return
        case.file()
        case.dispatch(assignment.grid_code, assignment.grid_branch_id, handler, self.dispatched_at)
        case.accept(handler)
        if self.resolution and self.resolved_at:
            case.resolve(self.resolution, self.resolved_at)
            if self.satisfaction:
                case.follow_up(self.satisfaction, "")
                if self.closed_at:
                    case.close(self.closed_at)


class Cases:
    """The cases application service."""

    def __init__(
        self,
        store: EventStore,
        vault: PersonalDataVault,
        clock: Clock,
        grids: GridResolver,
        policy: DeadlinePolicy | None = None,
    ) -> None:
        self.cases = Repository(store, Case)
        self.store = store
        self.vault = vault
        self.clock = clock
        self.grids = grids
        self.policy = policy or DeadlinePolicy.default()

    async def register(
        self,
        caller: Caller,
        channel: Channel,
        community_code: str,
        address: str,
        description: str,
        urgency: Urgency,
        resident_name: str,
        resident_phone: str,
    ) -> Case:
        if parse_unit_code(community_code)[0] is not UnitKind.COMMUNITY:
            raise InvalidInput(f"community_code {community_code!r} is not a community's code")
        authorize(caller.principal, INTAKE, community_code)
        name, phone = (resident_name or "").strip(), re.sub(r"[ -]", "", resident_phone or "")
        if not name:
            raise InvalidInput("resident_name is required")
        if not _PHONE.fullmatch(resident_phone or ""):
            raise InvalidInput(f"resident_phone {resident_phone!r} is not a phone number")
        resident = await self.vault.person_for("resident", phone)
        case = Case.register(
            str(new_uuid()),
            channel,
            community_code,
            address,
            description,
            urgency,
            resident,
            await self.vault.seal(resident, name),
            await self.vault.seal(resident, phone),
            self.clock.now(),
            self.policy,
        )
        await self.cases.save(case, caller.metadata)
        return case

    async def classify(self, caller: Caller, case_id: str, category: str, urgency: Urgency) -> Case:
        return await self._command(
            caller, case_id, INTAKE, lambda c: c.classify(category, urgency, self.policy)
        )

    async def answer_on_spot(self, caller: Caller, case_id: str, answer: str) -> Case:
        now = self.clock.now()
        return await self._command(caller, case_id, INTAKE, lambda c: c.answer_on_spot(answer, now))

    async def file(self, caller: Caller, case_id: str) -> Case:
        return await self._command(caller, case_id, INTAKE, lambda c: c.file())

    async def dispatch(self, caller: Caller, case_id: str, grid_code: str | None) -> Case:
        case = await self._authorized(caller, case_id, DISPATCHERS)
        case.check_can_dispatch()  # refuse before asking party_orgs anything
        assignment = await self.grids.resolve(case.community_code, case.address, grid_code)
        handler = await self._seal_handler(assignment)
        now = self.clock.now()
        return await self._update(
            caller,
            case,
            lambda c: c.dispatch(assignment.grid_code, assignment.grid_branch_id, handler, now),
        )

    async def reassign(self, caller: Caller, case_id: str, grid_code: str, reason: str) -> Case:
        case = await self._authorized(caller, case_id, DISPATCHERS)
        if not grid_code:
            raise InvalidInput("grid_code is required")
        assignment = await self.grids.resolve(case.community_code, None, grid_code)
        handler = await self._seal_handler(assignment)
        return await self._update(
            caller,
            case,
            lambda c: c.reassign(assignment.grid_code, assignment.grid_branch_id, handler, reason),
        )

    async def accept(
        self, caller: Caller, case_id: str, by: str, person_id: str | None = None
    ) -> Case:
        case = await self._authorized(caller, case_id, HANDLERS)
        case.check_can_accept()  # before the name is sealed for nothing
        sealed = await self._seal_named(case, "accepted by", by, kind="staff", person=person_id)
        return await self._update(caller, case, lambda c: c.accept(sealed))

    async def return_to_sender(self, caller: Caller, case_id: str, reason: str) -> Case:
        return await self._command(caller, case_id, HANDLERS, lambda c: c.return_to_sender(reason))

    async def note_progress(self, caller: Caller, case_id: str, note: str) -> Case:
        return await self._command(caller, case_id, HANDLERS, lambda c: c.note_progress(note))

    async def open_mediation(
        self, caller: Caller, case_id: str, mediator: str, person_id: str | None = None
    ) -> Case:
        case = await self._authorized(caller, case_id, HANDLERS)
        case.check_can_open_mediation()
        sealed = await self._seal_named(
            case, "mediator", mediator, kind="mediator", person=person_id
        )
        return await self._update(caller, case, lambda c: c.open_mediation(sealed))

    async def name_of(self, name: SealedName | None) -> str:
        """A name the case holds, for display: ``[erased]`` once the person is forgotten."""
        return await self.vault.show_name(name)

    async def _seal_handler(self, assignment: Assignment) -> SealedName:
        """The handler's name, sealed in cases' own vault under the person id party_orgs
        gave: forgetting that person here erases it from cases too."""
        name = required_text("handler", assignment.handler, 100)
        return await self.vault.seal_name(assignment.handler_person, name)

    async def _seal_named(
        self, case: Case, field: str, text: str, *, kind: str, person: str | None
    ) -> SealedName:
        """A person named in free text, sealed under a person id: the one given, else the
        handler's when it is the handler's name, else one the vault keeps for the name."""
        name = required_text(field, text, 100)
        handler = case.handler
        if person is not None:
            person = _person_id(f"{field} person_id", person)
        elif handler and handler.ciphertext and await self.name_of(handler) == name:
            person = handler.person_id
        else:
            person = await self.vault.person_for(kind, name)
        return await self.vault.seal_name(person, name)

    async def hold_mediation_session(self, caller: Caller, case_id: str, summary: str) -> Case:
        return await self._command(
            caller, case_id, HANDLERS, lambda c: c.hold_mediation_session(summary)
        )

    async def conclude_mediation(
        self, caller: Caller, case_id: str, agreed: bool, terms: str
    ) -> Case:
        return await self._command(
            caller, case_id, HANDLERS, lambda c: c.conclude_mediation(agreed, terms)
        )

    async def resolve(self, caller: Caller, case_id: str, resolution: str) -> Case:
        now = self.clock.now()
        return await self._command(caller, case_id, HANDLERS, lambda c: c.resolve(resolution, now))

    async def follow_up(
        self, caller: Caller, case_id: str, satisfaction: int, comment: str
    ) -> Case:
        return await self._command(
            caller, case_id, FOLLOW_UP, lambda c: c.follow_up(satisfaction, comment)
        )

    async def close(self, caller: Caller, case_id: str) -> Case:
        now = self.clock.now()
        return await self._command(caller, case_id, FOLLOW_UP, lambda c: c.close(now))

    async def reopen(self, caller: Caller, case_id: str, reason: str) -> Case:
        now = self.clock.now()
        return await self._command(
            caller, case_id, FOLLOW_UP, lambda c: c.reopen(reason, now, self.policy)
        )

    async def merge(self, caller: Caller, duplicate_id: str, original_id: str) -> Case:
        original = await self._authorized(caller, original_id, INTAKE)
        return await self._command(caller, duplicate_id, INTAKE, lambda c: c.merge_into(original))

    async def reject(self, caller: Caller, case_id: str, reason: str) -> Case:
        return await self._command(caller, case_id, INTAKE, lambda c: c.reject(reason))

    async def withdraw(self, caller: Caller, case_id: str, reason: str) -> Case:
        return await self._command(caller, case_id, INTAKE, lambda c: c.withdraw(reason))

    async def request_funds(
        self,
        caller: Caller,
        case_id: str,
        amount_fen: int,
        payee_account: str,
        purpose: str,
        evidence: str,
    ) -> Case:
        """Ask the community's special fund for money; funds takes it from the event."""
        return await self._command(
            caller,
            case_id,
            HANDLERS,
            lambda c: c.request_funds(amount_fen, payee_account, purpose, evidence),
        )

    async def record_funding_outcome(
        self, case_id: str, expenditure_id: str, paid: bool, reason: str, correlation_id: str | None
    ) -> Case:
        """Record what funds did with the case's request (from funds' events)."""
        caller = Caller(FUNDS_OUTCOMES, correlation_id)
        return await self._command(
            caller,
            case_id,
            {R.SERVICE},
            lambda c: c.record_funding_outcome(expenditure_id, paid, reason),
        )

    async def import_case(self, caller: Caller, record: HistoricalCase) -> Case:
        """Record a case from the past: the same domain steps, with the record's times."""
        if parse_unit_code(record.community_code)[0] is not UnitKind.COMMUNITY:
            raise InvalidInput(
                f"community_code {record.community_code!r} is not a community's code"
            )
        authorize(caller.principal, IMPORTERS, record.community_code)
        record.check_times(self.clock.now())
        assignment = (
            await self.grids.resolve(record.community_code, None, record.grid_code)
            if record.grid_code
            else None
        )
        phone = re.sub(r"[ -]", "", record.resident_phone or "")
        if not _PHONE.fullmatch(record.resident_phone or "") or not record.resident_name.strip():
            raise InvalidInput("a resident_name and a resident_phone are required")
        resident = await self.vault.person_for("resident", phone)
        case_id = (
            str(natural_id("imported-case", record.source_id))
            if record.source_id
            else str(new_uuid())
        )
        existing = await self.cases.find(case_id)
        if existing is not None:
            return existing  # imported already
        case = Case.register(
            case_id,
            record.channel,
            record.community_code,
            record.address,
            record.description,
            record.urgency,
            resident,
            await self.vault.seal(resident, record.resident_name.strip()),
            await self.vault.seal(resident, phone),
            record.received_at,
            self.policy,
        )
        handler = await self._seal_handler(assignment) if assignment else None
        record.replay_onto(case, assignment, handler, self.policy)
        try:
            await self.cases.save(case, caller.metadata)
        except ConcurrencyError:
            return await self._load(case_id)  # a concurrent import of the same record
        return case

    async def supervise(self, case_id: str) -> int:
        """Issue the notices a case's breached deadlines call for; how many were issued."""
        now = self.clock.now()
        issued: list[object] = []
        caller = Caller(SUPERVISOR, f"supervision-{case_id}")
        await self._command(caller, case_id, {R.SERVICE}, lambda c: issued.extend(c.supervise(now)))
        return len(issued)

    async def get(self, caller: Caller, case_id: str) -> Case:
        """A case, for anyone signed in (auditors included)."""
        return await self._load(case_id)

    # -- helpers ------------------------------------------------------------------------

    async def _command(
        self, caller: Caller, case_id: str, roles: set[Role], change: Callable[[Case], object]
    ) -> Case:
        case = await self._authorized(caller, case_id, roles)
        return await self._update(caller, case, change)

    async def _authorized(self, caller: Caller, case_id: str, roles: set[Role]) -> Case:
        case = await self._load(case_id)
        authorize(caller.principal, roles, case.community_code)
        return case

    async def _update(self, caller: Caller, case: Case, change: Callable[[Case], object]) -> Case:
        def apply(fresh: Case) -> None:
            change(fresh)

        return await self.cases.update(case.id, apply, caller.metadata, loaded=case)

    async def _load(self, case_id: str) -> Case:
        try:
            return await self.cases.get(case_id)
        except AggregateNotFound:
            raise NotFound(f"case {case_id} does not exist") from None


def _person_id(field: str, text: str) -> str:
    """A person id given by a caller: a member's id, or one a vault made (kind-uuid)."""
    if not _PERSON_ID.fullmatch(text):
        raise InvalidInput(f"{field} {text!r} is not a person's id")
    return text


_PERSON_ID = re.compile(
    r"^([a-z_]+-)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
