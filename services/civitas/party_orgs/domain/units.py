"""Administrative units: district → street → community → grid, and the grids' posts."""

from __future__ import annotations

from typing import Any

from civitas.errors import InvalidInput, RuleViolation
from civitas.eventkit import UNSEALED, Aggregate, DomainEvent, SealedName, applies, registry
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
    """The holder's name is sealed under their person id (the member id for a member):
    forgetting that person erases it. ``holder`` is the plaintext name that events of
    schema 1 carried, before names were sealed."""

    schema_version = 2
    post: str
    holder_person: str
    holder_ciphertext: str | None
    member_id: str | None
    duty: str
    holder: str | None = None


class GridPostVacated(DomainEvent):
    schema_version = 2
    post: str
    holder_person: str


@registry.upcaster("GridPostAssigned", 1)
def _post_assigned_v1(data: dict[str, Any]) -> dict[str, Any]:
    data["holder_person"] = data.get("member_id") or UNSEALED
    data["holder_ciphertext"] = None
    return data


@registry.upcaster("GridPostVacated", 1)
def _post_vacated_v1(data: dict[str, Any]) -> dict[str, Any]:
    data.pop("holder")  # the post alone says which holder left
    data["holder_person"] = UNSEALED
    return data


MAX_POPULATION = 10_000_000
"""More residents than any district has (Nanjing as a whole has about 9.5 million):
insights keeps a unit's population in a 32-bit column and a scorecard's field."""


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
        if not 0 <= population <= MAX_POPULATION:
            raise InvalidInput(f"population is from 0 to {MAX_POPULATION:,}, not {population}")
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

    def assign_post(
        self,
        post: str,
        holder: SealedName,
        member_id: str | None,
        duty: str,
    ) -> None:
        """Give a post to a person, whose name comes sealed (see ``GridPostAssigned``)."""
        post, duty = check_text("post", post), check_text("duty", duty, 500)
        self._check_kind(UnitKind.GRID, "posts belong to grids")
        current = self.posts.get(post)
        if current is not None and current.holder_person == holder.person_id:
            return  # already so: a retried command changes nothing
        if current is not None:
            raise RuleViolation(
                f"post {post!r} of {self.id} is held by another person "
                f"({current.holder_person}); vacate it first"
            )
        self._record(
            GridPostAssigned(
                post=post,
                holder_person=holder.person_id,
                holder_ciphertext=holder.ciphertext,
                member_id=member_id,
                duty=duty,
            )
        )

    def vacate_post(self, post: str) -> None:
        current = self.posts.get(check_text("post", post))
        if current is None:
            raise RuleViolation(f"post {post!r} of {self.id} is not held by anyone")
        self._record(GridPostVacated(post=post, holder_person=current.holder_person))

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
