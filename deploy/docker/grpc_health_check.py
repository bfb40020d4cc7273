"""Docker HEALTHCHECK for a Civitas service: exit 0 when its gRPC health check says SERVING.

    python /usr/local/bin/civitas-health cases

The port is the service's own (CIVITAS_<SERVICE>_GRPC_PORT, CIVITAS_GRPC_PORT or the
default), read the way the service reads it. Kubernetes does not need this: its probes
speak grpc.health.v1 themselves.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from civitas.chassis.settings import PORTS
from civitas.eventkit import setting


def check(service: str) -> int:
    port = setting("grpc_port", service, str(PORTS[service][0]))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=3
            )
        except grpc.RpcError as failed:
            print(f"{service}: {failed.code().name}", file=sys.stderr)
            return 1
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    print(f"{service}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(check(sys.argv[1]))
