"""The web console in a real browser: ``civitas up``, a small ``civitas demo``, then each
page in headless Chromium (Debian's ``chromium``, driven by Playwright). The token comes
in the address's fragment, leaves the address bar, and nothing on any page breaks the
Content-Security-Policy."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import ConsoleMessage, Page, async_playwright

from civitas.demo import SAGA_REQUESTS
from civitas.party_orgs.domain.members import member_id_for
from tests.conftest import missing_dependency
from tests.support.platform import Platform, address_of, civitas_up, cli, insights_caught_up

pytestmark = pytest.mark.slow

IMPORTED = 200
REQUESTS = IMPORTED + len(SAGA_REQUESTS)  # a year imported, and the live ones that ask for money
MEMBER_NUMBER = "QH000000"

# For each chart on the page: its size, how many clearly coloured pixels its plot area
# holds (axes, grid and labels are grey; the legend sits outside), and each dataset's sum.
CHARTS = """() => [...document.querySelectorAll("[data-chart]")].map((container) => {
  const canvas = container.querySelector("canvas");
  const chart = Chart.getChart(canvas);
  const scale = canvas.width / canvas.clientWidth;
  const area = chart.chartArea;
  const pixels = canvas.getContext("2d").getImageData(
    Math.floor(area.left * scale), Math.floor(area.top * scale),
    Math.ceil((area.right - area.left) * scale), Math.ceil((area.bottom - area.top) * scale),
  ).data;
  let coloured = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    const [r, g, b, a] = [pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3]];
    if (a > 128 && Math.max(r, g, b) - Math.min(r, g, b) > 80) coloured += 1;
  }
  return {
    name: container.dataset.chart,
    ready: container.dataset.chartReady === "true",
    coloured,
    sums: chart.data.datasets.map((d) => d.data.reduce((sum, v) => sum + v, 0)),
  };
})"""


# Each Content-Security-Policy violation on a page, reported to the test (Playwright's
# init scripts and exposed functions are not subject to the page's policy).
REPORT_CSP_VIOLATIONS = """document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolation(`${location.pathname}: ${event.violatedDirective} ${event.blockedURI}`);
});"""


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        missing_dependency("Debian's chromium (run scripts/chromium-install.sh)")
    assert path is not None
    return path


async def load_demo(platform: Platform, cwd: Path) -> str:
    env = platform.env
    demo = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "civitas.cli", "demo"],
        *["--members", "100", "--requests", str(IMPORTED), "--activities", "20"],
        *["--expenditures", "40", "--party-orgs", address_of(env, "party_orgs")],
        *["--cases-address", address_of(env, "cases")],
        *["--volunteers-address", address_of(env, "volunteers")],
        *["--funds-address", address_of(env, "funds")],
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(demo.communicate(), 120)
    assert demo.returncode == 0, out.decode()
    return out.decode()


def get_json(url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        body: dict[str, Any] = json.load(reply)
        return body


async def api(base: str, path: str, token: str) -> dict[str, Any]:
    return await asyncio.to_thread(get_json, base + path, token)


async def busiest_community(base: str, token: str) -> dict[str, Any]:
    """A community with requests, volunteer hours and payments, for charts with data."""
    streets = (await api(base, "/api/scorecards/QH/children", token))["scorecards"]
    communities = [
        card
        for street in streets
        for card in (await api(base, f"/api/scorecards/{street['unit_code']}/children", token))[
            "scorecards"
        ]
    ]
    with_data = [
        c
        for c in communities
        if int(c["requests_received"]) and int(c["volunteer_tenths_of_hours"])
    ]
    assert with_data, "no community has both requests and volunteer hours"
    return max(
        with_data, key=lambda c: (int(c["funds_disbursed_fen"]) > 0, int(c["requests_received"]))
    )


async def shown(page: Page, name: str, shots: Path) -> dict[str, Any]:
    """Wait until the page has its data and every chart has drawn; screenshot it; what
    it shows."""
    await page.wait_for_selector("body[data-loaded='true'], body[data-error]")
    failure = await page.locator("#error").inner_text()
    assert await page.get_attribute("body", "data-loaded") == "true", failure
    await page.wait_for_function(
        "[...document.querySelectorAll('[data-chart]')].every((c) => c.dataset.chartReady)"
    )
    await page.screenshot(path=shots / f"{name}.png", full_page=True)
    figures = page.locator(".figure")
    return {
        "text": await page.locator("main").inner_text(),
        "figures": dict(
            zip(
                await figures.locator("dt").all_inner_texts(),
                await figures.locator("dd").all_inner_texts(),
                strict=True,
            )
        ),
        "rows": {
            table: await page.locator(f"#{table} tbody tr").count()
            for table in ["streets", "activities"]
        },
        "charts": await page.evaluate(CHARTS),
        "url": page.url,
    }


async def test_the_console_shows_the_district_a_community_a_member_and_a_case_with_charts(
    tmp_path: Path,
) -> None:
    executable = chromium()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with civitas_up(tmp_path) as platform:
        found = re.search(r"web console: (http://\S+)/#token=(\S+)", platform.printed)
        assert found, f"civitas up printed no console address:\n{platform.printed}"
        console_url = found.group(0).removeprefix("web console: ")
        base, token = found.group(1), found.group(2)
        await load_demo(platform, tmp_path)
        await insights_caught_up(Path(platform.env["CIVITAS_VAR_DIR"]))
        district = (await api(base, "/api/scorecards/QH", token))["scorecard"]
        community = await busiest_community(base, token)
        listed = await cli(
            platform.env,
            tmp_path,
            "cases.ListCases",
            {"communityCode": community["unit_code"], "pageSize": "1"},
            address_of(platform.env, "cases"),
        )
        case_id = listed["cases"][0]["caseId"]

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=executable)
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            errors: list[str] = []

            def console_error(message: ConsoleMessage) -> None:
                if message.type == "error":
                    errors.append(f"{page.url}: {message.text}")

            page.on("console", console_error)
            page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
            violations: list[str] = []

            def csp_violation(report: str) -> None:
                violations.append(report)

            await page.expose_function("cspViolation", csp_violation)
            await page.add_init_script(REPORT_CSP_VIOLATIONS)

            await page.goto(console_url)
            overview = await shown(page, "district", shots)
            street = community["unit_code"][:5]
            async with page.expect_navigation():
                await page.click(f"#streets a[href='/?street={street}#communities']")
            street_page = await shown(page, "street", shots)
            async with page.expect_navigation():
                await page.click(f"#communities a[href='/community/{community['unit_code']}']")
            community_page = await shown(page, "community", shots)
            await page.goto(f"{base}/member/{member_id_for(MEMBER_NUMBER)}")
            member_page = await shown(page, "member", shots)
            await page.goto(f"{base}/case/{case_id}")
            case_page = await shown(page, "case", shots)
            timeline_types = await page.locator("#timeline li").evaluate_all(
                "(items) => items.map((li) => li.dataset.type)"
            )
            card = await api(base, f"/api/members/{member_id_for(MEMBER_NUMBER)}/card", token)
            timeline = (await api(base, f"/api/cases/{case_id}/timeline", token))["timeline"]
            browser_errors = list(errors)

            await page.goto(f"{base}/community/QH-12-99")  # no such community
            await page.wait_for_selector("body[data-error]")
            unknown = await page.locator("#error").inner_text()
            stranger = await browser.new_page()  # a tab that never got the token
            await stranger.goto(f"{base}/")
            await stranger.wait_for_selector("#notice:not([hidden])")
            notice = await stranger.locator("#notice").inner_text()
            await stranger.fill("#sign-in input[name=token]", token)  # pasted in
            async with stranger.expect_navigation():
                await stranger.click("#sign-in button")
            signed_in = await shown(stranger, "signed-in", shots)
            in_query = await browser.new_page()  # a token in the query is no way in
            await in_query.goto(f"{base}/?token={token}")
            await in_query.wait_for_selector("#notice:not([hidden])")
            refused_query = await in_query.locator("#notice").inner_text()
            query_url = in_query.url
            query_loaded = await in_query.get_attribute("body", "data-loaded")
            await browser.close()

    assert violations == []
    assert browser_errors == []
    assert token not in overview["url"]  # taken into sessionStorage, out of the bar
    assert "#" not in overview["url"]
    assert int(district["requests_received"]) == REQUESTS
    assert overview["figures"]["收到诉求 Requests received"] == f"{REQUESTS:,}"
    assert overview["rows"]["streets"] == 12
    [trend] = overview["charts"]
    assert trend["ready"]
    assert trend["coloured"] > 500
    received, resolved, _hours = trend["sums"]
    assert 0 < received <= REQUESTS
    assert resolved > 0

    assert community["unit_name"] in street_page["text"]  # the street lists its communities
    assert community_page["url"].endswith(f"/community/{community['unit_code']}")
    assert community["unit_name"] in community_page["text"]
    assert f"fund:{community['unit_code']}:special" in community_page["text"]
    assert "200,000.00" in community_page["text"]  # the year's allocation on the statement
    charts = {c["name"]: c for c in community_page["charts"]}
    assert sorted(charts) == ["funds", "requests", "volunteer-hours"]
    for chart in charts.values():
        assert chart["ready"], chart
        assert chart["coloured"] > 200, chart
    assert charts["requests"]["sums"][0] > 0
    assert charts["volunteer-hours"]["sums"][0] > 0
    assert charts["funds"]["sums"][0] >= 200_000  # allocated this year, in yuan

    assert member_page["figures"]["党员编号 Member number"] == MEMBER_NUMBER
    assert member_page["rows"]["activities"] == len(card["card"]["activities"]) > 0
    assert "活动记录表 Activities" in member_page["text"]
    assert "群众评价表 Residents' feedback" in member_page["text"]

    assert case_id in case_page["text"]
    assert timeline_types[0] == "CaseRegistered"
    assert timeline_types == [entry["type"] for entry in timeline["entries"]]
    assert "CaseRegistered" in case_page["text"]

    assert "404" in unknown
    assert "QH-12-99" in unknown
    assert "civitas token" in notice
    assert "civitas up" in notice
    assert "#token=" in notice
    assert signed_in["figures"]["收到诉求 Requests received"] == f"{REQUESTS:,}"
    assert token not in signed_in["url"]
    assert "?token=" in refused_query
    assert "not accepted" in refused_query
    assert query_loaded is None  # no data was asked for with it
    assert query_url == f"{base}/"  # and it left the address bar
    for name in ["district", "street", "community", "member", "case"]:
        assert (shots / f"{name}.png").stat().st_size > 20_000, name
