"""insights over HTTP: every response (page, static file, API answer, the server's own
errors) forbids framing, sniffing and referrers and allows only the console's own
scripts and styles; the API takes a token from the Authorization header only."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from civitas.chassis.auth import Role, TokenAuthority
from civitas.eventkit import GENESIS, ManualClock, RecordedEvent, create_read_model_engine
from civitas.insights.bootstrap import sources
from civitas.insights.http import build_app
from civitas.insights.projections import PartyFacts
from civitas.insights.queries import InsightsQueries
from civitas.insights.views import InsightsViews

AUTHORITY = TokenAuthority("h" * 40)
TOKEN = AUTHORITY.mint("auditor", [Role.AUDITOR], ["QH"])
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CLOCK = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))


@dataclass
class Console:
    client: TestClient  # type: ignore[type-arg]
    broken: TestClient  # type: ignore[type-arg]  # its read model has no tables


def district_registered() -> RecordedEvent:
    data = {"code": "QH", "kind": "district", "name": "秦淮区", "parent_code": None}
    return RecordedEvent(
        uuid.uuid4(), "unit-QH", 0, 1, "UnitRegistered", 1, CLOCK.now(), "t", None, None,
        {**data, "population": 1000}, GENESIS,
    )  # fmt: skip


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/read.db")
    empty = create_read_model_engine(f"sqlite:///{tmp_path}/empty.db")
    with engine.begin() as conn:
        for _, projection in sources():
            projection.create(conn)
        PartyFacts().apply(district_registered(), conn)
    apps = [build_app(InsightsViews(InsightsQueries(e, CLOCK)), AUTHORITY) for e in (engine, empty)]
    async with TestClient(TestServer(apps[0])) as client, TestClient(TestServer(apps[1])) as broken:
        yield Console(client, broken)
    engine.dispose()
    empty.dispose()


ROUTES = [  # (what, method, path, with the token, the status it gets)
    ("the district page", "GET", "/", False, 200),
    ("a community page", "GET", "/community/QH-01-02", False, 200),
    ("a member page", "GET", "/member/m-1", False, 200),
    ("a case page", "GET", "/case/c-1", False, 200),
    ("the console's script", "GET", "/static/app.js", False, 200),
    ("the style sheet", "GET", "/static/style.css", False, 200),
    ("vendored Chart.js", "GET", "/static/vendor/chart.umd.min.js", False, 200),
    ("an answer of the API", "GET", "/api/scorecards/QH", True, 200),
    ("the API without a token", "GET", "/api/scorecards/QH", False, 401),
    ("a bad request to the API", "GET", "/api/scorecards/QH/trend?months=x", True, 400),
    ("something the API does not know", "GET", "/api/scorecards/QH-09-09", True, 404),
    ("no such page", "GET", "/nothing/here", False, 404),
    ("no such static file", "GET", "/static/missing.js", False, 404),
    ("a method a page does not take", "POST", "/", False, 405),
]


@pytest.mark.parametrize(
    ("method", "path", "authorized", "status"),
    [route[1:] for route in ROUTES],
    ids=[route[0] for route in ROUTES],
)
async def test_every_response_carries_the_security_headers(
    console: Console, method: str, path: str, authorized: bool, status: int
) -> None:
    reply = await console.client.request(method, path, headers=BEARER if authorized else {})

    assert reply.status == status
    assert_secured(reply.headers)
    if path.startswith("/api/"):
        assert reply.headers["Cache-Control"] == "no-store"


async def test_an_internal_error_carries_the_security_headers(console: Console) -> None:
    reply = await console.broken.get("/api/scorecards/QH", headers=BEARER)

    assert reply.status == 500
    assert_secured(reply.headers)


def assert_secured(headers: Mapping[str, str]) -> None:
    policy = dict(
        directive.split(" ", 1) for directive in headers["Content-Security-Policy"].split("; ")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"  # no inline script, no eval, no other origin
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"


async def test_a_token_in_the_query_string_is_no_way_in(console: Console) -> None:
    in_query = await console.client.get(f"/api/scorecards/QH?token={TOKEN}")
    in_header = await console.client.get("/api/scorecards/QH", headers=BEARER)

    assert in_query.status == 401
    assert (await in_query.json()) == {"error": "no bearer token in the Authorization header"}
    assert in_header.status == 200
    assert (await in_header.json())["scorecard"]["unit_name"] == "秦淮区"


async def test_the_pages_load_no_inline_script_or_style(console: Console) -> None:
    for page in ("/", "/community/QH-01-02", "/member/m-1", "/case/c-1"):
        html = await (await console.client.get(page)).text()

        assert "<style" not in html
        assert not re.search(r"\s(style|on[a-z]+)=", html)  # no inline style, no onclick=
        scripts = re.findall(r"<script[^>]*>", html)
        assert scripts
        assert all(re.search(r' src="/static/[^"]+"', script) for script in scripts)
