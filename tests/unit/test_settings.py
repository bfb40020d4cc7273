"""Service settings from CIVITAS_ variables."""

from __future__ import annotations

import pytest

from civitas.chassis.settings import ServiceSettings

SECRET = {"CIVITAS_AUTH_SECRET": "s" * 40}


def test_embedded_defaults_put_each_service_under_var() -> None:
    settings = ServiceSettings.from_env("cases", {**SECRET, "CIVITAS_VAR_DIR": "data"})

    assert settings.eventstore_url == "sqlite:///data/cases/events.db"
    assert settings.read_model_url == "sqlite:///data/cases/read.db"
    assert (settings.grpc_port, settings.metrics_port) == (50052, 9102)
    assert settings.kafka_bootstrap is None


def test_a_shared_postgres_url_gives_each_service_its_own_schema() -> None:
    env = {
        **SECRET,
        "CIVITAS_EVENTSTORE_URL": "postgresql://u:p@db/civitas",
        "CIVITAS_FUNDS_READ_MODEL_URL": "postgresql://u:p@db/civitas?schema=ledger",
    }

    cases = ServiceSettings.from_env("cases", env)
    funds = ServiceSettings.from_env("funds", env)

    assert cases.eventstore_url == "postgresql://u:p@db/civitas?schema=cases"
    assert funds.eventstore_url == "postgresql://u:p@db/civitas?schema=funds"
    assert funds.read_model_url == "postgresql://u:p@db/civitas?schema=ledger"


def test_a_service_specific_port_overrides_the_default() -> None:
    env = {**SECRET, "CIVITAS_PARTY_ORGS_GRPC_PORT": "6001", "CIVITAS_GRPC_PORT": "7001"}

    assert ServiceSettings.from_env("party_orgs", env).grpc_port == 6001
    assert ServiceSettings.from_env("cases", env).grpc_port == 7001


def test_no_token_secret_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="CIVITAS_AUTH_SECRET"):
        ServiceSettings.from_env("cases", {"CIVITAS_VAR_DIR": str(tmp_path)})


def test_a_service_token_is_minted_again_before_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import jwt

    from civitas.chassis.auth import Role, TokenAuthority

    authority = TokenAuthority("k" * 40)
    token = authority.service_token("cases", ttl_seconds=3600)
    first = token()
    assert token() == first
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3300)  # 5 minutes of life left

    renewed = token()

    assert renewed != first
    claims = jwt.decode(renewed, options={"verify_signature": False})
    assert (claims["roles"], claims["exp"] - claims["iat"]) == ([Role.SERVICE.value], 3600)
