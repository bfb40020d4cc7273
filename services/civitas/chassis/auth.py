"""Signed bearer tokens: who calls, in which roles, for which part of the district.

Tokens are JWTs (HS256) carrying the subject, the roles and the scope: the codes of
the administrative units the person works for (``QH`` for the whole district,
``QH-03`` for a street, ``QH-03-07`` for a community). Unit codes are hierarchical,
so a unit is in scope when its code is a scope code or lies below one.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import jwt

from civitas import catalog
from civitas.errors import DomainError, NotAllowed, Unauthenticated
from civitas.eventkit import Metadata
from civitas.geography import parse_unit_code

ISSUER = "civitas"
AUDIENCE = "civitas"
MAX_TOKEN_SECONDS = 12 * 3600
"""The longest life a token may have, whoever minted it: a longer one is refused."""
MAX_TOKEN_CHARS = 4096
_SUBJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}")


class Role(enum.StrEnum):
    """The roles of DESIGN.md."""

    DISTRICT_ADMIN = "district_admin"
    STREET_STAFF = "street_staff"
    COMMUNITY_STAFF = "community_staff"
    GRID_WORKER = "grid_worker"
    PARTY_SECRETARY = "party_secretary"
    VOLUNTEER_COORDINATOR = "volunteer_coordinator"
    FINANCE_OFFICER = "finance_officer"
    AUDITOR = "auditor"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a verified token names."""

    subject: str
    roles: frozenset[Role]
    scope: tuple[str, ...]

    def covers(self, unit_code: str) -> bool:
        """True when ``unit_code`` is one of the scope's units or lies below one."""
        return any(unit_code == s or unit_code.startswith(s + "-") for s in self.scope)

    @property
    def is_service(self) -> bool:
        """A service's own token (it holds the service role and no other)."""
        return Role.SERVICE in self.roles


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks a service to do something, and the correlation id their request carries
    (a person over gRPC, or a service's own process acting as a named principal)."""

    principal: Principal
    correlation_id: str | None = None

    @property
    def metadata(self) -> Metadata:
        """What the events this caller's command records say of who and why."""
        return Metadata(actor=self.principal.subject, correlation_id=self.correlation_id)


def authorize(principal: Principal, allowed: Iterable[Role], unit_code: str | None) -> None:
    """Raise :class:`NotAllowed` unless one of the caller's roles is allowed and, when
    the command concerns a unit, that unit is in the caller's scope."""
    allowed = frozenset(allowed)
    if not principal.roles & allowed:
        names = ", ".join(sorted(r.value for r in allowed)) or "no role"
        raise NotAllowed(f"{principal.subject} may not do this (needs one of: {names})")
    if unit_code is not None and not principal.covers(unit_code):
        raise NotAllowed(
            f"{principal.subject} works for {', '.join(principal.scope) or 'no unit'}, "
            f"not for {unit_code}"
        )


def authorize_all(principal: Principal, allowed: Iterable[Role], *unit_codes: str) -> None:
    """:func:`authorize` for a command that touches several units: each must be in the
    caller's scope (a transfer's two accounts, a member's organization and the
    community they report to, …)."""
    allowed = frozenset(allowed)
    authorize(principal, allowed, None)
    for code in dict.fromkeys(unit_codes):
        authorize(principal, allowed, code)


HIDDEN = "[hidden]"


def may_see_personal_data(principal: Principal, *record_units: str) -> bool:
    """The one rule for names and phones, whichever service or door shows them: they
    show only to people who work for a unit the record belongs to (auditors and
    district admins: the whole district), and never to finance. A record belongs to
    its community (a case, a volunteer), a member to their organization's unit and to
    the community they report to, a post's or seat's holder to the grid or the org."""
    if not principal.roles - {Role.FINANCE_OFFICER}:
        return False
    return any(principal.covers(unit) for unit in record_units if unit)


QUERY_PREFIXES = ("Get", "List")
QUERIES = frozenset({"ResolveGrid", "WalkOrgTree", "VerifyChains"})


def is_query(method_name: str) -> bool:
    """Whether an RPC only reads (any valid token may read); every other one is a
    command, which checks role and scope. Named once, exactly: ``ResolveCase`` is a
    command although ``ResolveGrid`` is a query."""
    return method_name.startswith(QUERY_PREFIXES) or method_name in QUERIES


SERVICE_GRANTS: dict[str, frozenset[str]] = {
    # volunteers' process manager records a member's verified hours on their card
    "volunteers": frozenset({"/civitas.party_orgs.v1.PartyOrgsService/RecordCardActivity"}),
}
"""The commands each service's token may call on another service: what its process
managers need, nothing more. A service token may call every query."""


def check_service_call(principal: Principal, path: str) -> None:
    """Refuse a service token a command its service was not granted."""
    method = path.rsplit("/", 1)[-1]
    granted = SERVICE_GRANTS.get(principal.subject, frozenset())
    if principal.is_service and not is_query(method) and path not in granted:
        raise NotAllowed(f"the {principal.subject} service's token may not call {method}")


class TokenAuthority:
    """Mints and verifies tokens with one shared secret."""

    def __init__(self, secret: str, *, ttl_seconds: int = 3600) -> None:
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 characters")
        self._secret = secret
        self.ttl_seconds = ttl_seconds
        self._verified: dict[str, tuple[Principal, int]] = {}

    def mint(
        self,
        subject: str,
        roles: Iterable[Role | str],
        scope: Iterable[str],
        *,
        ttl_seconds: int | None = None,
    ) -> str:
        """A signed token for ``subject`` with these roles and scope, living
        ``ttl_seconds`` (an hour by default, at most :data:`MAX_TOKEN_SECONDS`)."""
        lifetime = ttl_seconds or self.ttl_seconds
        if not 0 < lifetime <= MAX_TOKEN_SECONDS:
            raise ValueError(f"a token lives from 1 s to {MAX_TOKEN_SECONDS} s, not {lifetime}")
        principal = _principal(subject, [Role(r) for r in roles], list(scope))
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "exp": now + lifetime,
            "roles": sorted(r.value for r in principal.roles),
            "scope": sorted(principal.scope),
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def service_token(
        self, subject: str, scope: Iterable[str] = ("QH",), ttl_seconds: int = 3600
    ) -> Callable[[], str]:
        """A token source for service-to-service calls: mints a ``service`` token and a
        fresh one whenever the current one has less than a tenth of its life left."""
        scope = tuple(scope)
        current: list[tuple[str, float]] = []

        def token() -> str:
            if not current or current[0][1] - time.time() < ttl_seconds / 10:
                minted = self.mint(subject, [Role.SERVICE], scope, ttl_seconds=ttl_seconds)
                current[:] = [(minted, time.time() + ttl_seconds)]
            return current[0][0]

        return token

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`Unauthenticated` otherwise.

        A token verified once is remembered until it expires (services see the same
        few tokens again and again), so the signature is checked once per token."""
        known = self._verified.get(token)
        if known is not None and known[1] > time.time():
            return known[0]
        principal, expires = self._decode(token)
        if len(self._verified) >= 10_000:
            self._verified.clear()
        self._verified[token] = (principal, expires)
        return principal

    def _decode(self, token: str) -> tuple[Principal, int]:
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated(f"the token is longer than {MAX_TOKEN_CHARS} characters")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the token is not valid: {exc}") from None
        try:
            if int(claims["exp"]) - int(claims["iat"]) > MAX_TOKEN_SECONDS:
                raise ValueError(f"it lives longer than {MAX_TOKEN_SECONDS} s")
            roles, scope = claims.get("roles", []), claims.get("scope", [])
            if not isinstance(roles, list) or not isinstance(scope, list):
                raise ValueError("roles and scope are lists")
            principal = _principal(claims["sub"], [Role(r) for r in roles], scope)
        except (DomainError, ValueError, TypeError) as exc:
            raise Unauthenticated(f"the token is not valid: {exc}") from None
        return principal, int(claims["exp"])


def _principal(subject: object, roles: list[Role], scope: list[object]) -> Principal:
    """A principal from a token's claims, each checked: a short plain subject, known
    roles (a service's token holds the service role alone), unit codes as scope."""
    if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
        raise ValueError(f"subject {subject!r} is not 1-64 letters, digits and _.@:-")
    if Role.SERVICE in roles and len(set(roles)) > 1:
        raise ValueError("a service token holds the service role and no other")
    if Role.SERVICE in roles and subject not in catalog.names():
        raise ValueError(f"a service token names its service, one of {sorted(catalog.names())}")
    if len(scope) > 50:
        raise ValueError("a scope names at most 50 units")
    for code in scope:
        if not isinstance(code, str):
            raise ValueError(f"scope entry {code!r} is not a unit code")
        parse_unit_code(code)
    return Principal(subject, frozenset(roles), tuple(str(c) for c in scope))
