"""Request ids (AIP-155) across every service's protos: who takes one, what it binds."""

from __future__ import annotations

import importlib
import inspect
import uuid

import pytest
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor

from civitas.chassis.auth import Principal, Role, is_query
from civitas.chassis.client import with_request_id
from civitas.chassis.requests import REQUEST_ID, digest_of, id_for, request_id_of
from civitas.errors import InvalidInput
from civitas.funds.v1 import funds_pb2
from civitas.party_orgs.v1 import party_orgs_pb2

SERVICES = ["party_orgs", "cases", "volunteers", "funds", "insights", "audit", "privacy"]
SERVICERS = {
    "party_orgs": "civitas.party_orgs.grpc_api:PartyOrgsServicer",
    "cases": "civitas.cases.grpc_api:CasesServicer",
    "volunteers": "civitas.volunteers.grpc_api:VolunteersServicer",
    "funds": "civitas.funds.grpc_api:FundsServicer",
}
KEYED_BY_THEIR_OWN_KEY = {"Transfer", "AssignTask"}  # idempotency_key, bound in the domain
NATURALLY_IDEMPOTENT = {"ForgetPerson"}  # forgetting twice forgets once; it names no object


def commands() -> list[tuple[str, MethodDescriptor]]:
    found = []
    for service in SERVICES:
        module = importlib.import_module(f"civitas.{service}.v1.{service}_pb2")
        for descriptor in module.DESCRIPTOR.services_by_name.values():
            found += [(service, m) for m in descriptor.methods if not is_query(m.name)]
    return found


COMMANDS = commands()


@pytest.mark.parametrize(("service", "method"), COMMANDS, ids=lambda v: getattr(v, "name", v))
def test_every_command_takes_a_request_id_or_a_key_of_its_own(
    service: str, method: MethodDescriptor
) -> None:
    fields = method.input_type.fields_by_name
    if method.name in KEYED_BY_THEIR_OWN_KEY:
        assert "idempotency_key" in fields
    elif method.name not in NATURALLY_IDEMPOTENT:
        assert fields[REQUEST_ID].type == FieldDescriptor.TYPE_STRING


@pytest.mark.parametrize(("service", "method"), COMMANDS, ids=lambda v: getattr(v, "name", v))
def test_every_reply_names_what_a_repeated_request_returns(
    service: str, method: MethodDescriptor
) -> None:
    """A repeated request is answered with what the first reply named, as it is now: the
    reply's first field is a message whose first field is that thing's id, and the
    servicer renders it (``current``) or has a replay of its own for the method."""
    if REQUEST_ID not in method.input_type.fields_by_name:
        return
    first = method.output_type.fields[0]
    assert first.type == FieldDescriptor.TYPE_MESSAGE
    assert not first.is_repeated
    assert first.message_type.fields[0].type == FieldDescriptor.TYPE_STRING
    module, _, name = SERVICERS[service].partition(":")
    servicer = getattr(importlib.import_module(module), name)
    source = inspect.getsource(servicer.current)
    custom = hasattr(servicer, f"replay_{method.name}")
    assert custom or first.message_type.name in source, (
        f"{name}.current renders no {first.message_type.name} for {method.name}"
    )


ADMIN = Principal("admin-1", frozenset({Role.DISTRICT_ADMIN}), ("QH",))
PATH = "/civitas.funds.v1.FundsService/OpenAccount"


def opening(**changes: object) -> funds_pb2.OpenAccountRequest:
    fields = {"kind": 3, "owner_code": "QH", "key": "yinfa", "name": "银发", "request_id": "r"}
    return funds_pb2.OpenAccountRequest(**{**fields, **changes})


def test_a_digest_binds_every_field_the_method_and_the_caller_but_not_the_request_id() -> None:
    first = digest_of(PATH, ADMIN, opening())
    assert digest_of(PATH, ADMIN, opening(request_id="another")) == first
    for other in (opening(name="银发餐桌"), opening(key="other"), opening(owner_code="QH-01")):
        assert digest_of(PATH, ADMIN, other) != first
    assert digest_of(PATH.replace("OpenAccount", "Other"), ADMIN, opening()) != first
    for caller in (
        Principal("admin-2", ADMIN.roles, ADMIN.scope),
        Principal("admin-1", frozenset({Role.FINANCE_OFFICER}), ADMIN.scope),
        Principal("admin-1", ADMIN.roles, ("QH-01",)),
    ):
        assert digest_of(PATH, caller, opening()) != first


def test_a_request_id_is_a_uuid_or_nothing() -> None:
    given = str(uuid.uuid4())
    assert request_id_of(opening(request_id=given)) == given
    assert request_id_of(opening(request_id="")) is None
    assert request_id_of(funds_pb2.GetStatementRequest(account_id="x")) is None
    for bad in ("r", given + "\n", " " + given, "ＱＨ"):
        with pytest.raises(InvalidInput, match="request_id"):
            request_id_of(opening(request_id=bad))


def test_ids_derived_from_request_ids_are_stable_and_kept_apart_by_kind() -> None:
    request_id = str(uuid.uuid4())
    assert id_for("case", request_id) == id_for("case", request_id)
    assert id_for("case", request_id) != id_for("activity", request_id)
    assert id_for("case", None) is None


def test_the_chassis_client_names_each_command_it_sends_and_leaves_the_rest() -> None:
    bare = party_orgs_pb2.RegisterAdminUnitRequest(code="QH", name="秦淮区")
    named = with_request_id(bare)
    assert uuid.UUID(named.request_id)
    assert bare.request_id == ""
    assert with_request_id(bare).request_id != named.request_id  # a new request, a new id
    chosen = party_orgs_pb2.RegisterAdminUnitRequest(code="QH", request_id=named.request_id)
    assert with_request_id(chosen) is chosen
    query = party_orgs_pb2.GetAdminUnitRequest(code="QH")
    assert with_request_id(query) is query


@pytest.mark.parametrize(
    "look_alike",
    [
        "{%s}",  # braces
        "urn:uuid:%s",
        " %s",
        "%s\n",
        "%s\u200b",  # a zero-width space
    ],
)
def test_a_look_alike_of_a_request_id_is_no_request_id(look_alike: str) -> None:
    given = str(uuid.uuid4())
    with pytest.raises(InvalidInput, match="request_id"):
        request_id_of(opening(request_id=look_alike % given))


def test_unicode_digits_in_a_request_id_are_refused() -> None:
    given = "0" + str(uuid.uuid4())[1:]
    for digit in ("０", "٠"):  # full-width and Arabic-Indic zero: uuid.UUID takes both
        with pytest.raises(InvalidInput, match="request_id"):
            request_id_of(opening(request_id=digit + given[1:]))


def test_queries_are_named_exactly_and_everything_else_is_a_command() -> None:
    for query in ("GetCase", "ListCases", "ResolveGrid", "WalkOrgTree", "VerifyChains"):
        assert is_query(query)
    for command in ("ResolveCase", "VerifyHours", "RegisterCase", "Transfer"):
        assert not is_query(command)
