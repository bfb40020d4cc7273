"""Every RPC of every service, called over real gRPC with requests drawn from its
proto's input descriptor, by callers of every role and scope and by callers without a
valid token: no request may be answered INTERNAL or UNKNOWN (a bug), and bytes that
are no valid message are INVALID_ARGUMENT.

One test per RPC, named ``<service>.<gRPC service>.<method>``, so a failure names the
RPC and Hypothesis prints the request that broke it (the service logs the traceback).
``CIVITAS_FUZZ_EXAMPLES`` sets how many requests each RPC gets (a deeper run locally).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest
import pytest_asyncio
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from civitas.chassis.auth import Role
from civitas.chassis.server import MAX_REQUEST_BYTES
from civitas.eventkit import ManualClock
from tests.support.fuzz import (
    BUGS,
    GARBAGE_AUTHORIZATION,
    MALFORMED,
    RPCS,
    SERVES,
    Platform,
    call,
    callers,
    caught_up,
    decodes,
    requests,
    running_platform,
    shown,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
C = grpc.StatusCode
EXAMPLES = int(os.environ.get("CIVITAS_FUZZ_EXAMPLES", "12"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    clock = ManualClock(datetime(2026, 3, 1, 8, 30, tzinfo=UTC))
    async with running_platform(tmp_path_factory.mktemp("fuzz"), clock) as running:
        yield running


def anonymous() -> st.SearchStrategy[list[tuple[str, str]]]:
    """A caller without a valid token: none, or a garbage one."""
    garbage = st.sampled_from(GARBAGE_AUTHORIZATION).map(lambda g: [("authorization", g)])
    return st.one_of(st.just([]), garbage)


async def test_every_rpc_each_service_serves_is_fuzzed(platform: Platform) -> None:
    for name, served in platform.services.items():
        assert {s.full_name for s in served.services} == {s.full_name for s in SERVES[name]}
    for name in SERVES:
        assert name in platform.services, f"{name} is not running"


@pytest.mark.parametrize(("service", "method"), RPCS)
@FUZZ
@given(data=st.data())
async def test_no_request_is_an_internal_error(
    platform: Platform, service: str, method: MethodDescriptor, data: st.DataObject
) -> None:
    channel = platform.services[service].channel
    message = data.draw(requests(method, platform.known))
    note(f"request: {shown(message)}")
    caller = data.draw(callers(platform.authority), label="metadata")
    stranger = data.draw(anonymous(), label="metadata without a valid token")
    request = message.SerializeToString()

    code, details = await call(channel, method, request, caller)
    refused, why = await call(channel, method, request, stranger)

    assert code not in BUGS, f"{service} {method.name}: {code.name} {details}"
    assert code is not C.DEADLINE_EXCEEDED, f"{service} {method.name} hung"
    too_large = len(request) > MAX_REQUEST_BYTES and refused is C.RESOURCE_EXHAUSTED
    assert refused is C.UNAUTHENTICATED or too_large, f"{method.name}: {refused.name} {why}"


@pytest.mark.parametrize("service", list(SERVES))
async def test_malformed_bytes_are_invalid_argument_on_every_rpc(
    platform: Platform, service: str
) -> None:
    channel = platform.services[service].channel
    admin = platform.metadata(Role.DISTRICT_ADMIN)
    answers = {}
    for method in platform.methods(service):
        for payload in MALFORMED:
            if decodes(method, payload):  # an unknown field is no error: nothing to test
                continue
            for metadata in (admin, []):
                code, details = await call(channel, method, payload, metadata)
                if code is not C.INVALID_ARGUMENT or "not a valid protobuf" not in details:
                    answers[f"{method.name} {payload!r} {bool(metadata)}"] = (code.name, details)
    assert answers == {}


@pytest.mark.parametrize("service", list(SERVES))
@settings(FUZZ, max_examples=5 * EXAMPLES)
@given(data=st.data())
async def test_random_bytes_are_a_request_or_invalid_argument(
    platform: Platform, service: str, data: st.DataObject
) -> None:
    method = data.draw(st.sampled_from(platform.methods(service)), label="method")
    payload = data.draw(st.binary(max_size=64), label="payload")
    admin = platform.metadata(Role.DISTRICT_ADMIN)

    code, details = await call(platform.services[service].channel, method, payload, admin)

    if decodes(method, payload):
        assert code not in BUGS, f"{method.name}: {code.name} {details}"
    else:
        assert code is C.INVALID_ARGUMENT, f"{method.name}: {code.name} {details}"


async def test_after_the_fuzz_every_projection_catches_up(platform: Platform) -> None:
    """Nothing a caller sent stopped a read model: every projection applies every
    stream its store holds now."""
    await caught_up(platform)
