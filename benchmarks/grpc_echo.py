"""The baseline server of ``benchmarks.grpc_commands``: a bare grpc.aio echo.

One unary method, ``/bench.Echo/Echo``, bytes in and bytes out (no serializers),
no interceptors, no auth, no store: the floor a gRPC service in Python pays per
call. Run as its own process: ``python -m benchmarks.grpc_echo PORT``; stops on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import grpc

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Echo"


async def echo(request: bytes, context: Any) -> bytes:
    return request


async def serve(port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"echo ready on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
