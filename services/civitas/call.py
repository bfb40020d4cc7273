"""``civitas call SERVICE.Method JSON``: call any RPC with a JSON request, print JSON."""

from __future__ import annotations

import grpc
from google.protobuf import json_format
from google.protobuf.message_factory import GetMessageClass

from civitas import catalog
from civitas.chassis.client import open_channel


async def call(
    target: str,
    request_json: str,
    token: str,
    address: str | None = None,
    timeout_seconds: float = 5.0,
) -> str:
    """Call ``service.Method`` (e.g. ``party_orgs.ResolveGrid``) and return the JSON reply;
    the deadline covers the retries on UNAVAILABLE."""
    service, _, method_name = target.partition(".")
    if service not in catalog.names() or not method_name:
        known = sorted(catalog.names())
        raise SystemExit(f"name a method as SERVICE.Method, with SERVICE one of {known}")
    declared = catalog.spec(service)  # its stubs name the service's methods
    method = declared.grpc_service().methods_by_name.get(method_name)
    if method is None:
        raise SystemExit(f"{service} has no method {method_name}")
    request = json_format.Parse(request_json or "{}", GetMessageClass(method.input_type)())
    reply_class = GetMessageClass(method.output_type)
    channel = open_channel(
        address or f"127.0.0.1:{declared.grpc_port}",
        lambda: token,
        timeout_seconds=timeout_seconds,
    )
    try:
        rpc = channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=reply_class.FromString,
        )
        reply = await rpc(request)
    except grpc.aio.AioRpcError as exc:
        raise SystemExit(f"{exc.code().name}: {exc.details()}") from None
    finally:
        await channel.close(None)
    return json_format.MessageToJson(reply, ensure_ascii=False, indent=2)
