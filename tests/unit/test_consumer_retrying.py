"""How often a consumer tries a failing handler before parking the event: a setting."""

from __future__ import annotations

import pytest

from civitas.chassis.settings import ServiceSettings
from civitas.eventkit.projection import Retrying

SECRET = {"CIVITAS_AUTH_SECRET": "s" * 32}


def test_consumers_retry_five_times_by_default_and_a_service_may_say_otherwise() -> None:
    assert ServiceSettings.from_env("cases", SECRET).retrying() == Retrying(5, 0.2)
    env = {**SECRET, "CIVITAS_CONSUMER_ATTEMPTS": "3", "CIVITAS_INSIGHTS_CONSUMER_BACKOFF": "1.5"}
    assert ServiceSettings.from_env("insights", env).retrying() == Retrying(3, 1.5)
    assert ServiceSettings.from_env("funds", env).retrying() == Retrying(3, 0.2)


@pytest.mark.parametrize(
    ("attempts", "backoff"), [("0", "0.2"), ("many", "0.2"), ("3", "-1"), ("3", "nan")]
)
def test_a_bad_retry_setting_is_refused_by_name(attempts: str, backoff: str) -> None:
    env = {**SECRET, "CIVITAS_CONSUMER_ATTEMPTS": attempts, "CIVITAS_CONSUMER_BACKOFF": backoff}
    with pytest.raises(ValueError, match="CIVITAS_CONSUMER_ATTEMPTS"):
        ServiceSettings.from_env("cases", env).retrying()


def test_the_wait_doubles_after_each_failure_up_to_its_cap() -> None:
    assert [Retrying(5, 0.5, cap=3.0).delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
