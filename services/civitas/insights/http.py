"""insights over HTTP: its views as JSON, and the web console's pages.

JSON is protobuf's JSON mapping of the gRPC replies (snake_case field names, every
field present, int64 as strings), so the HTTP and gRPC answers never drift. The
API needs a bearer token in the Authorization header, like gRPC does, and nowhere
else: a token in the query string is ignored (query strings reach logs, the browser's
history and Referer headers). The console's pages are static; their script takes the
token from the address's fragment (``#token=``, which the browser never sends) or a
form, and sends it with each call. Every response forbids framing, sniffing, referrers
and any script or style but the console's own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import structlog
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from civitas.chassis.auth import TokenAuthority
from civitas.chassis.interceptor import PRINCIPAL
from civitas.errors import InvalidInput, NotFound, Unauthenticated

from .grpc_api import (
    member_card_reply,
    scorecard_reply,
    scorecards_reply,
    statement_reply,
    timeline_reply,
    trend_reply,
)
from .views import InsightsViews

CONSOLE = Path(__file__).parent / "console"
PAGES = {
    "/": "index.html",
    "/community/{code}": "community.html",
    "/member/{member_id}": "member.html",
    "/case/{case_id}": "case.html",
}
log = structlog.get_logger("civitas.insights")
T = TypeVar("T")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",  # the console's app.js and the vendored Chart.js, nothing inline
        "style-src 'self'",
        "img-src 'self' data:",  # the pages' empty data: favicon
        "connect-src 'self'",  # the JSON API
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    """Called for every response, the server's own errors included."""
    response.headers.update(SECURITY_HEADERS)
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"  # answers depend on the token


def as_json(message: Message) -> web.Response:
    body = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return web.json_response(body, dumps=_dumps)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=_dumps)


def _bearer(request: web.Request) -> str:
    """The caller's token as an ``authorization`` value, to forward to another service
    (``api`` has verified it)."""
    return f"Bearer {request.headers['Authorization'].removeprefix('Bearer ').strip()}"


def _months(request: web.Request) -> int:
    text = request.query.get("months", "12")
    if not (text.isascii() and text.isdigit()):  # "²" and "１２" are digits to isdigit
        raise InvalidInput(f"months {text!r} is not a whole number")
    return int(text)


def build_app(views: InsightsViews, authority: TokenAuthority) -> web.Application:
    """The aiohttp application: /api/... (JSON) and the console."""

    def api(
        query: Callable[[web.Request], Awaitable[T]], reply: Callable[[T], Message]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A route of the API: the view ``query`` asks, as gRPC's ``reply`` in JSON."""

        async def handle(request: web.Request) -> web.Response:
            header = request.headers.get("Authorization", "")
            try:
                if not header.startswith("Bearer "):
                    raise Unauthenticated("no bearer token in the Authorization header")
                # the caller, as gRPC's interceptor sets it: one rule for both doors
                PRINCIPAL.set(authority.verify(header.removeprefix("Bearer ").strip()))
                return as_json(reply(await query(request)))
            except Unauthenticated as refused:
                return _error(401, str(refused))
            except InvalidInput as bad:
                return _error(400, str(bad))
            except NotFound as missing:
                return _error(404, str(missing))

        return handle

    def page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            path = CONSOLE / name
            if not path.exists():
                return _error(404, f"the console page {name} is not built")
            return web.FileResponse(path)

        return serve

    def m(request: web.Request, name: str) -> str:
        return request.match_info[name]

    app = web.Application()
    app.on_response_prepare.append(_secure)
    app.router.add_get(
        "/api/scorecards/{code}", api(lambda r: views.scorecard(m(r, "code")), scorecard_reply)
    )
    app.router.add_get(
        "/api/scorecards/{code}/children",
        api(lambda r: views.children(m(r, "code")), scorecards_reply),
    )
    app.router.add_get(
        "/api/scorecards/{code}/trend",
        api(lambda r: views.trend(m(r, "code"), _months(r)), trend_reply),
    )
    app.router.add_get(
        "/api/members/{member_id}/card",
        api(lambda r: views.member_card(m(r, "member_id")), member_card_reply),
    )
    app.router.add_get(
        "/api/cases/{case_id}/timeline",
        api(lambda r: views.case_timeline(m(r, "case_id"), _bearer(r)), timeline_reply),
    )
    app.router.add_get(
        "/api/funds/{account_id}/statement",
        api(lambda r: views.fund_statement(m(r, "account_id")), statement_reply),
    )
    for route, name in PAGES.items():
        app.router.add_get(route, page(name))
    if CONSOLE.is_dir():
        app.router.add_static("/static", CONSOLE)
    return app


@contextlib.asynccontextmanager
async def serving_http(app: web.Application, host: str, port: int) -> AsyncIterator[int]:
    """Serve ``app`` on ``host:port`` (0: any free port) while inside; the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        addresses = runner.addresses  # the bound port, when 0 was asked for
        bound = addresses[0][1] if addresses else port
        log.info("insights console and JSON API", url=f"http://{host}:{bound}/")
        yield bound
    finally:
        await runner.cleanup()
