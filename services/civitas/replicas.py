"""Replicas of the services on one machine (``civitas up --replicas N``): each replica's
ports and settings, and the one gRPC target that names a service's replicas.

Replica 0 of a service listens on the service's own ports (its ``CIVITAS_<SERVICE>_*_PORT``
settings, else the catalog's); replica ``k`` on each of them plus ``k * PORT_STEP``, so
that the ports stay easy to read (cases: gRPC 50052, 50152, …; metrics 9102, 9202, …).
Other services, ``civitas call`` and the demo reach every replica through one target,
``ipv4:127.0.0.1:50052,127.0.0.1:50152``, whose calls the chassis channel balances
round robin. Replicas share their service's stores, so more than one needs stores
every process can open at once: PostgreSQL, not the embedded SQLite files."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from civitas import catalog
from civitas.chassis.catalog import ServiceSpec
from civitas.chassis.settings import Locations, own_setting

PORT_STEP = 100
MAX_REPLICAS = 9
"""At most nine replicas of a service: a tenth's ports (+900) would reach the next ones'
of a port table written in hundreds, and one machine gains nothing from more."""


@dataclass(frozen=True, slots=True)
class Replica:
    """One process of a service: its name in what ``civitas up`` prints (the service's
    own when it runs alone, ``cases#1`` among replicas) and the ports it listens on, by
    setting (``grpc_port``, ``metrics_port``, and insights' ``http_port``)."""

    service: str
    name: str
    host: str
    ports: Mapping[str, int]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.ports['grpc_port']}"

    def settings(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with this replica's ports in its service's own settings."""
        own = {f"CIVITAS_{self.service.upper()}_{n.upper()}": str(p) for n, p in self.ports.items()}
        return {**env, **own}


def layout(env: Mapping[str, str], replicas: int, host: str) -> list[Replica]:
    """Every replica of every service, in the catalog's start order; a ValueError when a
    port would fall outside 1-65535."""
    if not 1 <= replicas <= MAX_REPLICAS:
        raise ValueError(f"replicas: from 1 to {MAX_REPLICAS}, not {replicas}")
    return [
        Replica(
            spec.name,
            spec.name if replicas == 1 else f"{spec.name}#{k}",
            host,
            {name: _port(name, port + k * PORT_STEP) for name, port in _ports(env, spec).items()},
        )
        for spec in catalog.SERVICES
        for k in range(replicas)
    ]


def target(replicas: list[Replica]) -> str:
    """The gRPC target naming ``replicas`` (of one service): the address of one alone,
    else the ``ipv4:`` (or ``ipv6:``) list of all, which a channel balances."""
    if len(replicas) == 1:
        return replicas[0].address
    scheme = f"ipv{ipaddress.ip_address(replicas[0].host).version}"
    return f"{scheme}:" + ",".join(replica.address for replica in replicas)


def targets(replicas: list[Replica]) -> dict[str, str]:
    """Each service's target, by service."""
    return {s: target([r for r in replicas if r.service == s]) for s in catalog.names()}


def shared_store_refusal(env: Mapping[str, str], var: Path, replicas: int) -> str | None:
    """Why ``replicas`` processes of each service cannot share its stores as ``env``
    names them (one that is not on PostgreSQL), in words for an operator; None when
    they can, or when each service runs alone."""
    if replicas == 1:
        return None
    for service in catalog.names():
        where = Locations.of(service, env, var)
        for store, url in (
            ("event store", where.eventstore_url),
            ("read models", where.read_model_url),
            ("vault", where.vault_url),
        ):
            if not url.startswith(("postgresql:", "postgres:")):
                return (
                    f"{replicas} replicas of {service} would share its {store} at {url}, "
                    "but an embedded store is one process's: give --postgres URL (or "
                    "PostgreSQL URLs in CIVITAS_EVENTSTORE_URL, CIVITAS_READ_MODEL_URL and "
                    "CIVITAS_VAULT_URL)"
                )
    return None


def _ports(env: Mapping[str, str], spec: ServiceSpec) -> dict[str, int]:
    declared = {"grpc_port": spec.grpc_port, "metrics_port": spec.metrics_port}
    if spec.http_port is not None:
        declared["http_port"] = spec.http_port
    return {name: int(own_setting(env, spec.name, name) or port) for name, port in declared.items()}


def _port(name: str, port: int) -> int:
    if not 0 < port < 65536:
        raise ValueError(f"a replica's {name} would be {port}, outside 1-65535")
    return port
