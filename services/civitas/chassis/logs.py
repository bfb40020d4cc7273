"""Structured logs (JSON lines) carrying the correlation id of the request or event in
hand and the current trace and span ids, with secrets masked.

Every line a service writes passes :func:`redact_secrets` last before it is rendered,
whether it comes from structlog or from the standard ``logging`` module (libraries,
the kernel): one place decides what never reaches a log.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from civitas.eventkit.tracing import current_correlation_id

MASK = "***"

_SECRET_KEY = re.compile(
    r"passw|passphrase|pwd|secret|token|authori[sz]ation|api[_-]?key|credential|cookie"
    r"|private[_-]?key|signature",
    re.IGNORECASE,
)
"""Keys whose values are secrets whatever they hold (``password``, ``auth_secret``,
``authorization``, ``x_api_key``, ``tokens``, ...)."""

_TEXT_SECRETS: list[tuple[re.Pattern[str], str]] = [
    # scheme://user:password@host: everything between the user's colon and the last @
    # of the URL (a password may hold an unescaped @)
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@'\"]*:)[^\s'\"]*@"), rf"\1{MASK}@"),
    # Authorization: Bearer <token>
    (re.compile(r"\b(Bearer)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1 {MASK}"),
    # a JWT anywhere (its header is base64url JSON: eyJ...)
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), MASK),
    # password=..., auth_secret='...', token=... in a DSN, a query string or a repr
    (
        re.compile(
            r"\b(\w*(?:password|passwd|pwd|secret|token|api[_-]?key))=(['\"]?)[^\s&;,'\"]+",
            re.IGNORECASE,
        ),
        rf"\1=\2{MASK}",
    ),
    # 'password': '...' or "auth_secret": "..." in a dict's repr or in JSON
    (
        re.compile(
            r"""(['"]\w*(?:passw\w*|pwd|secret|token|api[_-]?key|authori[sz]ation)['"]\s*:\s*)"""
            r"""(['"])(?:(?!\2).)*\2""",
            re.IGNORECASE,
        ),
        rf"\1\2{MASK}\2",
    ),
    # Authorization: Basic <base64 user:password>
    (
        re.compile(r"\b(authorization\s*[:=]\s*['\"]?Basic)\s+[A-Za-z0-9+/=]+", re.IGNORECASE),
        rf"\1 {MASK}",
    ),
]


def redact_text(text: str) -> str:
    """``text`` with URL passwords, bearer tokens, JWTs and ``password=`` values masked."""
    for pattern, replacement in _TEXT_SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _redacted(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: MASK if _is_secret_key(k) else _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(v) for v in value]
    return redact_text(repr(value))  # what the renderer would write, masked


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """A structlog processor: mask the value of every key that names a secret, and in
    every other value (nested ones too) the password of any URL, bearer tokens and JWTs.
    Run it after ``format_exc_info``, so tracebacks are masked too."""
    return {
        key: MASK if _is_secret_key(key) else _redacted(value) for key, value in event_dict.items()
    }


def add_trace_ids(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """A structlog processor: the trace and span ids of the current span (when tracing
    is on or a caller's trace passes through) and the correlation id of the work in
    hand (a request served, or an event a process manager reacts to), so a line can be
    found from a trace and a trace from a line."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    correlation = current_correlation_id()
    if correlation:
        event_dict.setdefault("correlation_id", correlation)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _rendering() -> list[Processor]:
    return [
        structlog.processors.format_exc_info,
        redact_secrets,
        structlog.processors.JSONRenderer(ensure_ascii=False),
    ]


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written (not when logging was
    configured), so a test that captures stderr sees the lines."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _CivitasHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler configure_logging installs (found again to be replaced)."""


def configure_logging(service: str, level: int = logging.INFO) -> None:
    """Log JSON lines to stderr, secrets masked; values bound with ``bind_contextvars``
    ride along. The standard ``logging`` module's records (WARNING and up) are written
    the same way, through the same masking."""
    structlog.configure(
        processors=[*_shared_processors(), *_rendering()],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = _CivitasHandler(_Stderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_shared_processors(), structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_rendering()],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CivitasHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
