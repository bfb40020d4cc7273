"""Kinds of refusal every service's domain and application layers raise.

They carry no transport: the gRPC edge maps each kind to its status code
(DESIGN.md: bad request → INVALID_ARGUMENT, missing → NOT_FOUND, version conflict
→ ABORTED, a rule says no → FAILED_PRECONDITION, not allowed → PERMISSION_DENIED, a
key already used for another request → ALREADY_EXISTS).
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every refusal a caller can cause; the message says what was wrong."""


class InvalidInput(DomainError, ValueError):
    """The request itself is malformed: a missing field, a bad code, a value out of range."""


class NotFound(DomainError, LookupError):
    """The thing the request names does not exist."""


class Conflict(DomainError):
    """Someone else changed the same thing first; read again and retry."""


class AlreadyExists(DomainError):
    """A caller-supplied key (a request id, an idempotency key, an entry's id) was used
    before for a different request: nothing was done, and the key stays bound to the
    first request."""


class RuleViolation(DomainError):
    """The request is well formed, but a business rule refuses it now."""


class NotAllowed(DomainError):
    """The caller's role or scope does not allow this."""


class Unauthenticated(DomainError):
    """The caller presented no valid token."""


class Unavailable(DomainError):
    """A service this one depends on cannot be reached; nothing was changed."""
