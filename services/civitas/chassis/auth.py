"""Signed bearer tokens: who calls, in which roles, for which part of the district.

Tokens are JWTs (HS256) carrying the subject, the roles and the scope: the codes of
the administrative units the person works for (``QH`` for the whole district,
``QH-03`` for a street, ``QH-03-07`` for a community). Unit codes are hierarchical,
so a unit is in scope when its code is a scope code or lies below one.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import jwt

from civitas.errors import NotAllowed, Unauthenticated
from civitas.eventkit import Metadata

ISSUER = "civitas"
AUDIENCE = "civitas"


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


HIDDEN = "[hidden]"


def may_see_personal_data(principal: Principal, unit_code: str) -> bool:
    """Names and phones show only to people who work for the unit the record belongs to
    (auditors and district admins: the whole district), and never to finance."""
    return bool(principal.roles - {Role.FINANCE_OFFICER}) and principal.covers(unit_code)


class TokenAuthority:
    """Mints and verifies tokens with one shared secret."""

    def __init__(self, secret: str, *, ttl_seconds: int = 12 * 3600) -> None:
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
        """A signed token for ``subject`` with these roles and scope."""
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "exp": now + (ttl_seconds or self.ttl_seconds),
            "roles": sorted(Role(r).value for r in roles),
            "scope": sorted(scope),
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
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
            roles = frozenset(Role(r) for r in claims.get("roles", []))
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except (jwt.InvalidTokenError, ValueError) as exc:
            raise Unauthenticated(f"the token is not valid: {exc}") from None
        principal = Principal(str(claims["sub"]), roles, tuple(claims.get("scope", [])))
        return principal, int(claims["exp"])
