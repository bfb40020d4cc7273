"""Where `civitas replay` builds its shadow: beside the live read model, one per projection."""

from __future__ import annotations

import pytest

from civitas.replay import catalog, shadow_url


def test_a_shadow_is_a_file_beside_the_live_one_on_sqlite() -> None:
    assert shadow_url("sqlite:///var/funds/read.db", "funds_ledger") == (
        "sqlite:///var/funds/read.shadow-funds_ledger.db"
    )


def test_each_projection_gets_a_schema_of_its_own_on_postgresql() -> None:
    live = "postgresql://civitas@db/civitas?schema=insights"
    schemas = {shadow_url(live, name).rsplit("schema=", 1)[1] for name in catalog()}

    assert len(schemas) == len(catalog())
    assert "insights_shadow_insights_cases" in schemas


def test_a_shadow_schema_longer_than_postgresql_allows_is_refused() -> None:
    longest = max(catalog(), key=len)
    fits = "s" * (63 - len("_shadow_") - len(longest))
    shadow_url(f"postgresql://civitas@db/civitas?schema={fits}", longest)

    with pytest.raises(SystemExit, match="longer than PostgreSQL's 63 characters"):
        shadow_url(f"postgresql://civitas@db/civitas?schema={fits}s", longest)
