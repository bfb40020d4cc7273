"""Logs mask secrets: URL passwords, tokens and the values of keys that name a secret,
whether the line comes from structlog or from the standard logging module."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from civitas.chassis.auth import Role, TokenAuthority
from civitas.chassis.logs import configure_logging, redact_text
from civitas.chassis.settings import ServiceSettings
from tests.support.process_state import logging_put_back

PASSWORD = "Tr0ub4dor-and-3"
STORE = f"postgresql://civitas:{PASSWORD}@127.0.0.1:5432/civitas?schema=funds"
JWT = TokenAuthority("k" * 40).mint("admin", [Role.DISTRICT_ADMIN], ["QH"])


@pytest.fixture(autouse=True)
def configured() -> Iterator[None]:
    with logging_put_back():
        configure_logging("funds")
        yield


def lines(said: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in said.splitlines() if line.strip()]


def test_a_log_line_keeps_no_password_no_token_and_no_authorization_but_keeps_the_rest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = structlog.get_logger("civitas.funds")

    log.info(
        "funds listening",
        port=50054,
        store=STORE,
        authorization=f"Bearer {JWT}",
        auth_secret="s" * 40,
        peer={"password": PASSWORD, "address": "127.0.0.1:50051"},
        note=f"called with {JWT}",
        header=f"Bearer {JWT}",
    )

    said = capsys.readouterr().err
    for secret in (PASSWORD, JWT, "s" * 40):
        assert secret not in said
    [line] = lines(said)
    assert line["event"] == "funds listening"
    assert line["port"] == 50054
    assert line["store"] == "postgresql://civitas:***@127.0.0.1:5432/civitas?schema=funds"
    assert line["authorization"] == line["auth_secret"] == "***"
    assert line["peer"] == {"password": "***", "address": "127.0.0.1:50051"}
    assert line["note"] == "called with ***"
    assert line["header"] == "Bearer ***"
    assert line["service"] == "funds"


def test_a_traceback_and_a_standard_logging_record_are_masked_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        raise ConnectionError(f"cannot reach {STORE}")
    except ConnectionError:
        structlog.get_logger("civitas.service").exception("service stopped on an error")
        logging.getLogger("civitas.eventkit.process").warning("retrying %s", STORE)

    said = capsys.readouterr().err
    assert PASSWORD not in said
    failed, retried = lines(said)
    assert "ConnectionError: cannot reach postgresql://civitas:***@127.0.0.1" in failed["exception"]
    assert (
        retried["event"] == "retrying postgresql://civitas:***@127.0.0.1:5432/civitas?schema=funds"
    )
    assert retried["logger"] == "civitas.eventkit.process"


def test_an_object_logged_whole_is_masked_in_what_it_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = ServiceSettings.from_env(
        "funds", {"CIVITAS_AUTH_SECRET": "q" * 40, "CIVITAS_EVENTSTORE_URL": STORE}
    )

    structlog.get_logger("civitas.funds").info("settings read", settings=settings)

    said = capsys.readouterr().err
    [line] = lines(said)
    assert "q" * 40 not in said
    assert PASSWORD not in said
    assert "auth_secret" not in line["settings"]  # kept out of the settings' repr
    assert "service='funds'" in line["settings"]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("kafka://user:p@ss/w0rd@broker:9093", "kafka://user:***@broker:9093"),  # a raw @ and /
        ("redis://:only-a-password@cache:6379/0", "redis://:***@cache:6379/0"),
        ("host=db user=u password=hunter2 dbname=x", "host=db user=u password=*** dbname=x"),
        ("GET /api?token=abc123&months=12", "GET /api?token=***&months=12"),
        ("Settings(auth_secret='abc', port=1)", "Settings(auth_secret='***', port=1)"),
        ("authorization: bearer abc.def", "authorization: bearer ***"),
        ("sqlite:///var/cases/events.db", "sqlite:///var/cases/events.db"),
        ("http://127.0.0.1:8080/community/QH-01-02", "http://127.0.0.1:8080/community/QH-01-02"),
        ("a member with a basic appraisal", "a member with a basic appraisal"),
        ("{'auth_secret': 'abc', 'port': 1}", "{'auth_secret': '***', 'port': 1}"),  # a dict
        ('{"password": "hunter2", "user": "u"}', '{"password": "***", "user": "u"}'),  # JSON
        ("Authorization: Basic dXNlcjpodW50ZXIy", "Authorization: Basic ***"),
    ],
)
def test_text_keeps_what_is_not_secret_and_masks_what_is(text: str, masked: str) -> None:
    assert redact_text(text) == masked
