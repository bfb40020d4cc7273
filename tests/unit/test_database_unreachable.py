"""A database that is down, restarting or gone in the middle of a call is answered
UNAVAILABLE, which a client may retry (its request id makes that safe), not INTERNAL:
the failover test saw INTERNAL for every command caught by a PostgreSQL restart."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
import sqlalchemy as sa

from civitas.chassis.interceptor import status_of


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_database_out_of_reach_is_unavailable(error: Exception) -> None:
    assert status_of(error) is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    "error",
    [
        sa.exc.ProgrammingError("SELEC 1", {}, Exception("syntax error")),
        asyncpg.exceptions.UndefinedTableError("relation does not exist"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_query_the_service_got_wrong_stays_a_bug(error: Exception) -> None:
    assert status_of(error) is None
