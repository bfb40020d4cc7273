"""cases commands: authorize against every unit a command touches, load, one domain
call, save."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from civitas.chassis.auth import (
    Caller,
    Principal,
    Role,
    authorize,
    authorize_all,
)
from civitas.chassis.requests import id_for
from civitas.errors import AlreadyExists, InvalidInput, RuleViolation
from civitas.eventkit import (
    Clock,
    EventStore,
    RecordedEvent,
    Repository,
    SealedName,
    natural_id,
)
from civitas.eventkit.ids import new_uuid
from civitas.eventkit.personal import PersonalDataVault, is_person_id
from civitas.geography import UnitKind, checked_community, grid_of, unit_code
from civitas.sealing import split_address
from civitas.validation import required_text

from .domain.case import LONG_TEXT, Case, Channel, DeadlinePolicy, Urgency
from .domain.values import funding_amount, payee_account
from .grids import Assignment, GridResolver

R = Role
INTAKE = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF, R.GRID_WORKER}
DISPATCHERS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF}
HANDLERS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF, R.GRID_WORKER, R.PARTY_SECRETARY}
FOLLOW_UP = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF}
IMPORTERS = {R.DISTRICT_ADMIN}
PROCESSES = {R.SERVICE}
"""The service's own processes, in-process principals: no RPC reaches them."""
SUPERVISOR = Principal("supervisor", frozenset({R.SERVICE}), ("QH",))
FUNDS_OUTCOMES = Principal("funds-outcomes", frozenset({R.SERVICE}), ("QH",))
_PHONE = re.compile(r"\+?[0-9][0-9 -]{4,19}")
_SOURCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/#-]{0,99}")
EARLIEST_IMPORT = datetime(2000, 1, 1, tzinfo=UTC)
"""No imported record is older: the district's earlier systems start after it."""


@dataclass(frozen=True, slots=True)
class CaseKey:
    """A key the caller chose that names the case a request makes: its request id, or an
    imported record's source id. The case's id derives from it, and the case keeps a
    digest of the request, so the key makes one case and only for that request."""

    label: str
    case_id: str

    @classmethod
    def of(cls, source_id: str | None, request_id: str | None) -> CaseKey | None:
        if source_id:
            if not _SOURCE_ID.fullmatch(source_id):
                raise InvalidInput(
                    f"source_id {source_id!r} is not 1-100 ASCII letters, digits and _.:/#-"
                )
            return cls(f"source_id {source_id!r}", str(natural_id("imported-case", source_id)))
        case_id = id_for("case", request_id)
        return cls(f"request_id {request_id}", case_id) if case_id else None


@dataclass(frozen=True, slots=True)
class Intake:
    """A request's address and description, checked: the address split into the clear
    part the grid needs and the rest, which is sealed with the description."""

    clear_address: str
    address_rest: str
    description: str

    @classmethod
    def of(cls, address: str, description: str) -> Intake:
        clear, rest = split_address(required_text("address", address, 300))
        if not clear.strip():
            raise InvalidInput(
                f"address {address.strip()!r} names no street, estate or building before its room"
            )
        return cls(clear, rest, required_text("description", description, LONG_TEXT))

    async def sealed(self, vault: PersonalDataVault, resident: str) -> tuple[str | None, str]:
        """The address rest (None when there is none) and description, sealed."""
        rest = await vault.seal(resident, self.address_rest) if self.address_rest else None
        return rest, await vault.seal(resident, self.description)


def digest_of(*fields: object) -> str:
    """A digest of what a request asked for, to compare a later request with."""
    text = json.dumps([None if f is None else str(f) for f in fields], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


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
        if self.received_at < EARLIEST_IMPORT:
            raise InvalidInput(f"received_at is before {EARLIEST_IMPORT.date()}")
        for (name, at), (later_name, later) in itertools.pairwise(given):
            if later < at:
                raise InvalidInput(f"{later_name} is before {name}")
        if given[-1][1] > now:
            raise InvalidInput(f"{given[-1][0]} is in the future")

    def digest(self, resident_id: str, resident_name: str) -> str:
        """What the record says, the resident by their id (which their phone gives) and
        name: two imports under one source id must agree on all of it."""
        return digest_of(
            "import",
            self.channel,
            self.community_code,
            self.address.strip(),
            self.description.strip(),
            self.urgency,
            resident_id,
            resident_name,
            self.received_at,
            self.category.strip(),
            self.grid_code,
            self.dispatched_at,
            self.resolution,
            self.resolved_at,
            self.satisfaction,
            self.closed_at,
        )

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
        request_id: str | None = None,
    ) -> Case:
        """A resident's request; with a request id, its case's id derives from it and a
        second registration under it returns the first case (another request under it is
        refused)."""
        checked_community(community_code)
        intake = Intake.of(address, description)
        authorize(caller.principal, INTAKE, community_code)
        resident, name, phone = await self._resident(resident_name, resident_phone)
        fields = (channel, community_code, address.strip(), description.strip(), urgency)
        digest = digest_of("register", *fields, resident, name)

        async def build(case_id: str, sealed_digest: str | None) -> Case:
            rest, text = await intake.sealed(self.vault, resident)
            return Case.register(
                case_id,
                channel,
                community_code,
                intake.clear_address,
                text,
                urgency,
                resident,
                await self.vault.seal(resident, name),
                await self.vault.seal(resident, phone),
                self.clock.now(),
                self.policy,
                sealed_digest,
                rest,
            )

        return await self._create(caller, CaseKey.of(None, request_id), resident, digest, build)

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
        """To the grid named, or the one party_orgs finds for the address: either must lie
        in the case's community, and the caller must work for both."""
        if grid_code:
            unit_code(grid_code, "grid_code", UnitKind.GRID)
        case = await self.cases.load(case_id, "case")
        _authorize_grid(caller.principal, DISPATCHERS, case.community_code, grid_code)
        case.check_can_dispatch()  # refuse before asking party_orgs anything
        assignment = await self.grids.resolve(case.community_code, case.address, grid_code)
        _authorize_grid(caller.principal, DISPATCHERS, case.community_code, assignment.grid_code)
        handler = await self._seal_handler(assignment)
        now = self.clock.now()
        return await self.cases.update(
            case.id,
            lambda c: c.dispatch(assignment.grid_code, assignment.grid_branch_id, handler, now),
            caller.metadata,
            loaded=case,
        )

    async def reassign(self, caller: Caller, case_id: str, grid_code: str, reason: str) -> Case:
        """To another grid of the case's community (or another person of its grid)."""
        unit_code(grid_code or "", "grid_code", UnitKind.GRID)
        case = await self.cases.load(case_id, "case")
        _authorize_grid(caller.principal, DISPATCHERS, case.community_code, grid_code)
        assignment = await self.grids.resolve(case.community_code, None, grid_code)
        _authorize_grid(caller.principal, DISPATCHERS, case.community_code, assignment.grid_code)
        handler = await self._seal_handler(assignment)
        return await self.cases.update(
            case.id,
            lambda c: c.reassign(assignment.grid_code, assignment.grid_branch_id, handler, reason),
            caller.metadata,
            loaded=case,
        )

    async def accept(
        self, caller: Caller, case_id: str, by: str, person_id: str | None = None
    ) -> Case:
        person = _person_id("accepted_by_person_id", person_id)
        case = await self._authorized(caller, case_id, HANDLERS)
        case.check_can_accept()  # before the name is sealed for nothing
        sealed = await self._seal_named(case, "accepted by", by, kind="staff", person=person)
        return await self.cases.update(
            case.id, lambda c: c.accept(sealed), caller.metadata, loaded=case
        )

    async def return_to_sender(self, caller: Caller, case_id: str, reason: str) -> Case:
        return await self._command(caller, case_id, HANDLERS, lambda c: c.return_to_sender(reason))

    async def note_progress(self, caller: Caller, case_id: str, note: str) -> Case:
        return await self._sealing(caller, case_id, "note", note, lambda c, t: c.note_progress(t))

    async def open_mediation(
        self, caller: Caller, case_id: str, mediator: str, person_id: str | None = None
    ) -> Case:
        person = _person_id("mediator_person_id", person_id)
        case = await self._authorized(caller, case_id, HANDLERS)
        case.check_can_open_mediation()
        sealed = await self._seal_named(case, "mediator", mediator, kind="mediator", person=person)
        return await self.cases.update(
            case.id, lambda c: c.open_mediation(sealed), caller.metadata, loaded=case
        )

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
        if person is None and handler and handler.ciphertext:
            person = handler.person_id if await self.vault.show_name(handler) == name else None
        if person is None:
            person = await self.vault.person_for(kind, name)
        return await self.vault.seal_name(person, name)

    async def hold_mediation_session(self, caller: Caller, case_id: str, summary: str) -> Case:
        return await self._sealing(
            caller, case_id, "summary", summary, lambda c, t: c.hold_mediation_session(t)
        )

    async def conclude_mediation(
        self, caller: Caller, case_id: str, agreed: bool, terms: str
    ) -> Case:
        return await self._sealing(
            caller, case_id, "terms", terms, lambda c, t: c.conclude_mediation(agreed, t)
        )

    async def _sealing(
        self,
        caller: Caller,
        case_id: str,
        field: str,
        text: str,
        change: Callable[[Case, str], object],
    ) -> Case:
        """A handler's command whose text is sealed under the case's resident's key. A
        forgotten resident's case takes no more of it: the vault makes no key for a
        forgotten id, also when the forget lands between this check and the seal."""
        text = required_text(field, text, LONG_TEXT)
        case = await self._authorized(caller, case_id, HANDLERS)
        if not await self.vault.holds_key(case.resident_id):
            raise RuleViolation(f"the resident was forgotten: no {field} is recorded for them")
        sealed = await self.vault.seal(case.resident_id, text)
        return await self.cases.update(
            case.id, lambda c: change(c, sealed), caller.metadata, loaded=case
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
        """A duplicate into its original: the caller works for both cases' communities."""
        duplicate, original = (
            await self.cases.load(duplicate_id, "case"),
            await self.cases.load(original_id, "case"),
        )
        authorize_all(caller.principal, INTAKE, duplicate.community_code, original.community_code)
        return await self.cases.update(
            duplicate.id, lambda c: c.merge_into(original), caller.metadata, loaded=duplicate
        )

    async def reject(self, caller: Caller, case_id: str, reason: str) -> Case:
        return await self._command(caller, case_id, INTAKE, lambda c: c.reject(reason))

    async def withdraw(self, caller: Caller, case_id: str, reason: str) -> Case:
        return await self._command(caller, case_id, INTAKE, lambda c: c.withdraw(reason))

    async def request_funds(
        self,
        caller: Caller,
        case_id: str,
        amount_fen: int,
        payee_account_id: str,
        purpose: str,
        evidence: str,
    ) -> Case:
        """Ask the community's special fund for money; funds takes it from the event."""
        funding_amount(amount_fen)
        payee_account(payee_account_id)
        return await self._command(
            caller,
            case_id,
            HANDLERS,
            lambda c: c.request_funds(amount_fen, payee_account_id, purpose, evidence),
        )

    async def record_funding_outcome(
        self, case_id: str, expenditure_id: str, paid: bool, reason: str, correlation_id: str | None
    ) -> Case:
        """Record what funds did with the case's request (from funds' events)."""
        caller = Caller(FUNDS_OUTCOMES, correlation_id)
        return await self._command(
            caller,
            case_id,
            PROCESSES,
            lambda c: c.record_funding_outcome(expenditure_id, paid, reason),
        )

    async def import_case(
        self, caller: Caller, record: HistoricalCase, request_id: str | None = None
    ) -> Case:
        """Record a case from the past: the same domain steps, with the record's times.
        Its source id (else its request id) names the case: importing the same record
        again returns it, another record under the same key is refused."""
        community = checked_community(record.community_code)
        if record.grid_code:
            unit_code(record.grid_code, "grid_code", UnitKind.GRID)
        _authorize_grid(caller.principal, IMPORTERS, community, record.grid_code)
        key = CaseKey.of(record.source_id, request_id)
        record.check_times(self.clock.now())
        intake = Intake.of(record.address, record.description)
        resident, name, phone = await self._resident(record.resident_name, record.resident_phone)

        async def build(case_id: str, sealed_digest: str | None) -> Case:
            assignment = None
            if record.grid_code:
                assignment = await self.grids.resolve(community, None, record.grid_code)
                _authorize_grid(caller.principal, IMPORTERS, community, assignment.grid_code)
            rest, text = await intake.sealed(self.vault, resident)
            case = Case.register(
                case_id,
                record.channel,
                community,
                intake.clear_address,
                text,
                record.urgency,
                resident,
                await self.vault.seal(resident, name),
                await self.vault.seal(resident, phone),
                record.received_at,
                self.policy,
                sealed_digest,
                rest,
            )
            handler = await self._seal_handler(assignment) if assignment else None
            record.replay_onto(case, assignment, handler, self.policy)
            return case

        return await self._create(caller, key, resident, record.digest(resident, name), build)

    async def supervise(self, case_id: str) -> int:
        """Issue the notices a case's breached deadlines call for; how many were issued."""
        now = self.clock.now()
        issued: list[object] = []
        caller = Caller(SUPERVISOR, f"supervision-{case_id}")
        await self._command(caller, case_id, PROCESSES, lambda c: issued.extend(c.supervise(now)))
        return len(issued)

    async def get(self, caller: Caller, case_id: str) -> Case:
        """A case, for anyone signed in (auditors included)."""
        return await self.cases.load(case_id, "case")

    async def history(self, case: Case) -> list[RecordedEvent]:
        """Every event of the case, as stored (its timeline and sealed text)."""
        return await self.store.read_stream(case.stream_id)

    # -- helpers ------------------------------------------------------------------------

    async def _resident(self, name: str, phone: str) -> tuple[str, str, str]:
        """The resident's id (found again by their phone), name and phone, checked."""
        name, digits = (name or "").strip(), re.sub(r"[ -]", "", phone or "")
        if not name:
            raise InvalidInput("resident_name is required")
        if not _PHONE.fullmatch(phone or ""):
            raise InvalidInput(f"resident_phone {phone!r} is not a phone number")
        return await self.vault.person_for("resident", digits), name, digits

    async def _create(
        self,
        caller: Caller,
        key: CaseKey | None,
        resident: str,
        digest: str,
        build: Callable[[str, str | None], Awaitable[Case]],
    ) -> Case:
        """Save the case ``build`` makes, under a random id or the one its key gives; a
        key's case is made once, for one request (:meth:`_made_by`)."""
        if key is None:
            case = await build(str(new_uuid()), None)
            await self.cases.save(case, caller.metadata)
            return case
        found = await self.cases.find(key.case_id)
        if found is None:
            case = await build(key.case_id, await self.vault.seal(resident, digest))
            found = await self.cases.create_or_fetch(case, caller.metadata)
            if found is case:
                return case  # else made meanwhile under the same key
        return await self._made_by(key, digest, found)

    async def _made_by(self, key: CaseKey, digest: str, found: Case) -> Case:
        """The case the key made, when it made it for this request; :class:`AlreadyExists`
        when it made it for another request."""
        if found.request_digest is None:
            return found  # imported before records were compared
        kept = await self.vault.open(found.resident_id, found.request_digest)
        if kept is None or not hmac.compare_digest(kept, digest):
            raise AlreadyExists(
                f"{key.label} was used for a different case ({found.id}); nothing was stored"
            )
        return found

    async def _command(
        self, caller: Caller, case_id: str, roles: set[Role], change: Callable[[Case], object]
    ) -> Case:
        case = await self._authorized(caller, case_id, roles)
        return await self.cases.update(case.id, change, caller.metadata, loaded=case)

    async def _authorized(self, caller: Caller, case_id: str, roles: set[Role]) -> Case:
        case = await self.cases.load(case_id, "case")
        authorize(caller.principal, roles, case.community_code)
        return case


def _authorize_grid(
    principal: Principal, roles: set[Role], community_code: str, grid_code: str | None
) -> None:
    """Role and scope over the case's community and the grid it goes to (party_orgs'
    ResolveGrid refuses another community's grid too; cases does not rely on it)."""
    authorize_all(principal, roles, community_code, *([grid_code] if grid_code else []))
    if grid_code:
        grid_of(community_code, grid_code)


def _person_id(field: str, text: str | None) -> str | None:
    """A person id given by a caller: a member's id, or one a vault made (kind-uuid)."""
    if text is not None and not is_person_id(text):
        raise InvalidInput(f"{field} {text!r} is not a person's id")
    return text
