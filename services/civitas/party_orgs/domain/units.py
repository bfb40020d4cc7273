"""Administrative units: district → street → community → grid, and the grids' posts."""

from __future__ import annotations

from civitas.errors import InvalidInput, RuleViolation
from civitas.eventkit import Aggregate, DomainEvent, applies
from civitas.geography import UnitKind, parse_unit_code
from civitas.validation import required_text as check_text


class UnitRegistered(DomainEvent):
    code: str
    kind: UnitKind
    name: str
    parent_code: str | None
    population: int
    addresses: list[str]


class UnitRenamed(DomainEvent):
    name: str


class ServiceCentreOpened(DomainEvent):
    name: str


class GridPostAssigned(DomainEvent):
    post: str
    holder: str
    member_id: str | None
    duty: str


class GridPostVacated(DomainEvent):
    post: str
    holder: str


class AdminUnit(Aggregate):
    """A street, community or grid (or the district); its id is its code."""

    category = "admin_unit"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.kind = UnitKind.DISTRICT
        self.name = ""
        self.parent_code: str | None = None
        self.population = 0
        self.addresses: list[str] = []
        self.service_centres: list[str] = []
        self.posts: dict[str, GridPostAssigned] = {}

    @classmethod
    def register(cls, code: str, name: str, population: int, addresses: list[str]) -> AdminUnit:
        kind, parent = parse_unit_code(code)
        if population < 0:
            raise InvalidInput(f"population must be >= 0, not {population}")
        if addresses and kind is not UnitKind.GRID:
            raise InvalidInput("only a grid covers addresses")
        cleaned = [check_text("address", a) for a in addresses]
        unit = cls(code)
        unit._record(
            UnitRegistered(
                code=code,
                kind=kind,
                name=check_text("name", name),
                parent_code=parent,
                population=population,
                addresses=cleaned,
            )
        )
        return unit

    def rename(self, name: str) -> None:
        name = check_text("name", name)
        if name != self.name:
            self._record(UnitRenamed(name=name))

    def open_service_centre(self, name: str) -> None:
        name = check_text("service centre name", name)
        self._check_kind(UnitKind.STREET, "only a street opens citizen service centres")
        if name in self.service_centres:
            raise RuleViolation(f"{self.id} already has the service centre {name!r}")
        self._record(ServiceCentreOpened(name=name))

    def assign_post(self, post: str, holder: str, member_id: str | None, duty: str) -> None:
        post, holder = check_text("post", post), check_text("holder", holder)
        duty = check_text("duty", duty, 500)
        self._check_kind(UnitKind.GRID, "posts belong to grids")
        current = self.posts.get(post)
        if current is not None and current.holder == holder:
            return  # already so: a retried command changes nothing
        if current is not None:
            raise RuleViolation(
                f"post {post!r} of {self.id} is held by {current.holder}; vacate it first"
            )
        self._record(GridPostAssigned(post=post, holder=holder, member_id=member_id, duty=duty))

    def vacate_post(self, post: str) -> None:
        current = self.posts.get(check_text("post", post))
        if current is None:
            raise RuleViolation(f"post {post!r} of {self.id} is not held by anyone")
        self._record(GridPostVacated(post=post, holder=current.holder))

    def _check_kind(self, kind: UnitKind, message: str) -> None:
        if self.kind is not kind:
            raise RuleViolation(f"{message}; {self.id} is a {self.kind}")

    @applies
    def _on_unit_registered(self, event: UnitRegistered) -> None:
        self.kind, self.name, self.parent_code = event.kind, event.name, event.parent_code
        self.population, self.addresses = event.population, list(event.addresses)

    @applies
    def _on_unit_renamed(self, event: UnitRenamed) -> None:
        self.name = event.name

    @applies
    def _on_service_centre_opened(self, event: ServiceCentreOpened) -> None:
        self.service_centres.append(event.name)

    @applies
    def _on_grid_post_assigned(self, event: GridPostAssigned) -> None:
        self.posts[event.post] = event

    @applies
    def _on_grid_post_vacated(self, event: GridPostVacated) -> None:
        del self.posts[event.post]
