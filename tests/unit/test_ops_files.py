"""The shipped Grafana dashboards' shape, and how the ops test reads alert expressions.
(That every query returns data is tests/e2e/test_ops_dashboards.py.)"""

from __future__ import annotations

import json

import pytest

from tests.support.prometheus import DASHBOARDS, concrete, signal_of


def dashboards() -> list[dict[str, object]]:
    return [json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))]


@pytest.mark.parametrize("dashboard", dashboards(), ids=lambda d: str(d["uid"]))
def test_every_panel_reads_prometheus_through_the_datasource_variable(
    dashboard: dict[str, object],
) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}  # type: ignore[index]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]  # type: ignore[attr-defined]
    templated = {"type": "prometheus", "uid": "${datasource}"}

    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert panels
    assert [p["title"] for p in panels if p["datasource"] != templated] == []
    assert [p["title"] for p in panels if not p["targets"]] == []
    assert [p["title"] for p in panels for t in p["targets"] if t["datasource"] != templated] == []
    ids = [p["id"] for p in dashboard["panels"]]  # type: ignore[attr-defined]
    assert len(ids) == len(set(ids))


def test_dashboard_uids_are_distinct() -> None:
    uids = [d["uid"] for d in dashboards()]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize(
    ("expr", "signal"),
    [
        ("up == 0", "up"),
        ('max by (job) (x{a=~"b>c"}) > 1000', 'max by (job) (x{a=~"b>c"})'),
        ("(a or b * 0) / c > 0.05", "(a or b * 0) / c"),
        (
            "max by (p) (lag and on (p) rate(n[5m]) > 0) > 1",
            "max by (p) (lag and on (p) rate(n[5m]) > 0)",
        ),
        ("sum(rate(x[10m])) / sum(rate(y[10m])) < 0.5", "sum(rate(x[10m])) / sum(rate(y[10m]))"),
    ],
)
def test_the_signal_of_an_alert_is_what_stands_before_its_one_comparison(
    expr: str, signal: str
) -> None:
    assert signal_of(expr) == signal


@pytest.mark.parametrize("expr", ["up", "a > 1 and b > 2", "a > b", "a > bool 1", "a > 1 or b"])
def test_an_alert_of_another_shape_is_refused(expr: str) -> None:
    with pytest.raises(AssertionError):
        signal_of(expr)


def test_grafana_variables_are_replaced_and_unknown_ones_refused() -> None:
    assert concrete('rate(x{job=~"$service"}[$__rate_interval])') == 'rate(x{job=~".*"}[5m])'
    assert concrete("rate(x[${__rate_interval}])") == "rate(x[5m])"
    with pytest.raises(AssertionError):
        concrete('x{instance="$instance"}')
