"""Under any CI value a test that cannot reach its dependency fails instead of skipping."""

from __future__ import annotations

import pytest

from tests.conftest import in_ci


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on", "github"])
def test_any_non_empty_ci_value_counts_as_ci(value: str) -> None:
    assert in_ci({"CI": value})


@pytest.mark.parametrize("environ", [{}, {"CI": ""}, {"CI": "  "}])
def test_no_ci_value_is_a_local_run(environ: dict[str, str]) -> None:
    assert not in_ci(environ)
