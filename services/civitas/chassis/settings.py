"""A service's settings, from ``CIVITAS_`` variables (service-specific ones win).

The one module that reads the process's environment (:func:`environment`): the rest
of Civitas is given the settings, or a mapping, and a tool that needs a port asks the
catalog."""

from __future__ import annotations

import os
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from civitas import catalog
from civitas.eventkit import setting
from civitas.eventkit.files import private_dirs
from civitas.eventkit.kafka.security import PLAINTEXT, KafkaSecurity
from civitas.eventkit.kafka.topics import check_namespace
from civitas.eventkit.projection import Retrying

from .kafka_access import principal

# Each service's default ports, as its spec declares them: gRPC, metrics.
PORTS = {spec.name: (spec.grpc_port, spec.metrics_port) for spec in catalog.SERVICES}
INSIGHTS_HTTP_PORT = catalog.spec("insights").http_port or 8080  # the console and JSON API
SECRET_FILE = Path("var/auth-secret")


def environment() -> Mapping[str, str]:
    """The process's environment, where every ``CIVITAS_`` variable is read."""
    return os.environ


def from_environment(
    name: str, service: str | None = None, default: str | None = None
) -> str | None:
    """``CIVITAS_<SERVICE>_<NAME>``, else ``CIVITAS_<NAME>``, else ``default``, from the
    process's environment (for the command line, before any service is chosen)."""
    return setting(name, service, default, environ=environment())


def own_setting(env: Mapping[str, str], service: str, name: str) -> str | None:
    """``CIVITAS_<SERVICE>_<NAME>`` alone (no shared fallback), or None when unset."""
    return env.get(f"CIVITAS_{service.upper()}_{name.upper()}") or None


@dataclass(frozen=True, slots=True)
class Locations:
    """Where a service keeps its events, read models and personal data, and its Kafka:
    what a tool (audit, replay, the command line) needs of a service, no secret."""

    service: str
    eventstore_url: str
    read_model_url: str
    vault_url: str
    kafka_bootstrap: str | None
    kafka_namespace: str
    var_dir: Path

    @classmethod
    def of(
        cls, service: str, environ: Mapping[str, str] | None = None, var: Path | None = None
    ) -> Locations:
        """``service``'s locations from ``environ`` (the process's by default); ``var``
        stands for ``CIVITAS_VAR_DIR``."""
        env = environment() if environ is None else environ
        var = var or Path(setting("var_dir", service, "var", environ=env) or "var")
        urls = {
            name: _own_schema(
                _get(env, f"{name}_url", service, f"sqlite:///{var}/{service}/{file}.db"), service
            )
            for name, file in (("eventstore", "events"), ("read_model", "read"), ("vault", "vault"))
        }
        return cls(
            service=service,
            eventstore_url=urls["eventstore"],
            read_model_url=urls["read_model"],
            vault_url=urls["vault"],
            kafka_bootstrap=setting("kafka_bootstrap", service, None, environ=env),
            kafka_namespace=_namespace(_get(env, "kafka_namespace", service, "civitas")),
            var_dir=var,
        )


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Everything a service's composition root needs to build it."""

    service: str
    eventstore_url: str
    read_model_url: str
    vault_url: str
    host: str
    grpc_port: int
    metrics_port: int
    auth_secret: str = field(repr=False)
    kafka_bootstrap: str | None
    kafka_namespace: str
    kafka_security: KafkaSecurity
    var_dir: Path
    peers: dict[str, str]
    environ: Mapping[str, str] = field(repr=False, compare=False)

    @classmethod
    def from_env(cls, service: str, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """Read the settings of ``service``; unset ones take the embedded defaults."""
        env = environment() if environ is None else environ
        where = Locations.of(service, env)
        grpc_port, metrics_port = PORTS.get(service, (0, 0))
        secret = setting("auth_secret", service, None, environ=env) or read_secret(where.var_dir)
        if not secret:
            raise ValueError(
                "no token secret: set CIVITAS_AUTH_SECRET (civitas up writes var/auth-secret)"
            )
        return cls(
            service=service,
            eventstore_url=where.eventstore_url,
            read_model_url=where.read_model_url,
            vault_url=where.vault_url,
            host=_get(env, "host", service, "127.0.0.1"),
            grpc_port=int(_get(env, "grpc_port", service, str(grpc_port))),
            metrics_port=int(_get(env, "metrics_port", service, str(metrics_port))),
            auth_secret=secret,
            kafka_bootstrap=where.kafka_bootstrap,
            kafka_namespace=where.kafka_namespace,
            kafka_security=kafka_security(service, env),
            var_dir=where.var_dir,
            peers={
                peer: env.get(f"CIVITAS_{peer.upper()}_ADDRESS") or f"127.0.0.1:{ports[0]}"
                for peer, ports in PORTS.items()
            },
            environ=dict(env),
        )

    def own(self, name: str, default: str) -> str:
        """This service's own ``CIVITAS_<SERVICE>_<NAME>`` (no shared fallback), or
        ``default``."""
        return own_setting(self.environ, self.service, name) or default

    def retrying(self) -> Retrying:
        """How its consumers retry an event their handler fails on before parking it:
        ``CIVITAS_CONSUMER_ATTEMPTS`` tries in all (default 5), waiting
        ``CIVITAS_CONSUMER_BACKOFF`` seconds after the first failure (default 0.2),
        twice as long after each next one; a bad value is refused with its name."""
        attempts = _get(self.environ, "consumer_attempts", self.service, "5")
        backoff = _get(self.environ, "consumer_backoff", self.service, "0.2")
        try:
            retrying = Retrying(int(attempts), float(backoff))
        except ValueError:
            retrying = Retrying(0, 0.0)
        if retrying.attempts < 1 or not 0 < retrying.backoff < 3600:
            raise ValueError(
                "CIVITAS_CONSUMER_ATTEMPTS must be a whole number of at least 1 and "
                f"CIVITAS_CONSUMER_BACKOFF seconds above 0 (below an hour), not {attempts!r}, "
                f"{backoff!r}"
            )
        return retrying

    def peer_address(self, service: str) -> str:
        """Where another service listens: ``CIVITAS_<SERVICE>_ADDRESS`` or its default port.
        The value is a gRPC target, which may name every replica:
        ``dns:///cases.civitas.svc.cluster.local:50052`` (a Kubernetes headless Service,
        one A record per ready pod) or ``ipv4:127.0.0.1:50052,127.0.0.1:50152``
        (``civitas up --replicas``); the chassis channel balances its calls over them."""
        return self.peers[service]

    def of_peer(self, service: str) -> ServiceSettings:
        """Another service's settings from the same environment: where its event store is,
        for a process manager that reads it directly in the embedded default."""
        shared = {"CIVITAS_AUTH_SECRET": self.auth_secret, "CIVITAS_VAR_DIR": str(self.var_dir)}
        return ServiceSettings.from_env(service, {**self.environ, **shared})


def kafka_security(service: str | None, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
    """How ``service`` (None: a command-line tool) authenticates to Kafka.

    ``CIVITAS_KAFKA_SECURITY_PROTOCOL``: PLAINTEXT (the default), SASL_PLAINTEXT or
    SASL_SSL; with SASL, ``CIVITAS_KAFKA_SASL_MECHANISM`` (SCRAM-SHA-512),
    ``CIVITAS_KAFKA_USERNAME`` (a service's own principal ``civitas-<service>`` when
    unset), the password in the file ``CIVITAS_KAFKA_PASSWORD_FILE`` names (a mounted
    secret; read at start, so a rotated password takes a restart) or, for local use,
    ``CIVITAS_KAFKA_PASSWORD``, and for SASL_SSL ``CIVITAS_KAFKA_CA_FILE``. Each may be
    set for one service alone (``CIVITAS_CASES_KAFKA_USERNAME``). A bad value is refused
    with the variables to set."""
    env = environment() if environ is None else environ

    def get(name: str, default: str | None = None) -> str | None:
        return setting(f"kafka_{name}", service, default, environ=env)

    protocol = get("security_protocol", "PLAINTEXT") or "PLAINTEXT"
    if protocol == "PLAINTEXT":
        return PLAINTEXT
    username = get("username") or (principal(service) if service else None)
    try:
        return KafkaSecurity(
            protocol,
            get("sasl_mechanism", "SCRAM-SHA-512") or "SCRAM-SHA-512",
            username,
            _kafka_password(get("password_file"), get("password")),
            get("ca_file"),
        )
    except ValueError as refused:
        raise ValueError(
            f"{refused}: set CIVITAS_KAFKA_SECURITY_PROTOCOL, CIVITAS_KAFKA_SASL_MECHANISM, "
            "CIVITAS_KAFKA_USERNAME and CIVITAS_KAFKA_PASSWORD_FILE (or CIVITAS_KAFKA_PASSWORD)"
        ) from None


def _kafka_password(file: str | None, given: str | None) -> str | None:
    if not file:
        return given
    try:
        return Path(file).read_text().strip() or None
    except OSError as unreadable:
        raise ValueError(
            f"CIVITAS_KAFKA_PASSWORD_FILE {file} cannot be read ({unreadable.strerror})"
        ) from None


@dataclass(frozen=True, slots=True)
class TraceSettings:
    """Where a service's spans go: nowhere (the default: no tracer provider at all),
    over OTLP/gRPC to ``CIVITAS_OTLP_ENDPOINT`` (a collector), or for local use to
    stderr (``CIVITAS_TRACE_EXPORTER=console``) or a file of JSON lines
    (``CIVITAS_TRACE_EXPORTER=file:<path>``). An endpoint alone means OTLP.
    ``CIVITAS_TRACE_SAMPLE_RATIO`` (1 unless set) is the share of traces a service
    starts that it records; a call or an event that comes with a trace is recorded
    when its caller's was."""

    exporter: str | None
    otlp_endpoint: str | None = None
    file: Path | None = None
    sample_ratio: float = 1.0

    @classmethod
    def from_env(cls, service: str, environ: Mapping[str, str] | None = None) -> TraceSettings:
        """``service``'s trace settings; an exporter that names no known kind, or OTLP
        without an endpoint, is refused with what to set."""
        env = environment() if environ is None else environ
        endpoint = setting("otlp_endpoint", service, None, environ=env)
        chosen = setting("trace_exporter", service, None, environ=env) or (
            "otlp" if endpoint else None
        )
        if chosen in (None, "none", "off"):
            return cls(None)
        ratio = _ratio(setting("trace_sample_ratio", service, "1", environ=env) or "1")
        if chosen == "otlp" and not endpoint:
            raise ValueError(
                "CIVITAS_TRACE_EXPORTER=otlp needs CIVITAS_OTLP_ENDPOINT (such as "
                "http://otel-collector:4317)"
            )
        if chosen.startswith("file:") and chosen != "file:":
            return cls("file", file=Path(chosen.removeprefix("file:")), sample_ratio=ratio)
        if chosen not in ("otlp", "console"):
            raise ValueError(
                f"CIVITAS_TRACE_EXPORTER is otlp, console, file:<path> or none, not {chosen!r}"
            )
        return cls(chosen, otlp_endpoint=endpoint, sample_ratio=ratio)


def _ratio(text: str) -> float:
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0 <= ratio <= 1:
        raise ValueError(f"CIVITAS_TRACE_SAMPLE_RATIO is a number from 0 to 1, not {text!r}")
    return ratio


def _namespace(text: str) -> str:
    try:
        return check_namespace(text)
    except ValueError as refused:
        raise ValueError(f"CIVITAS_KAFKA_NAMESPACE: {refused}") from None


def _get(env: Mapping[str, str], name: str, service: str, default: str) -> str:
    return setting(name, service, default, environ=env) or default


def _own_schema(url: str, service: str) -> str:
    """A PostgreSQL URL without ``?schema=`` gets the service's own schema: services that
    share a database server still never share tables."""
    if url.startswith(("postgresql", "postgres")) and "schema=" not in url:
        return f"{url}{'&' if '?' in url else '?'}schema={service}"
    return url


class UnsafeSecretFile(ValueError):
    """The token secret's file may be read or written by others than its owner."""


def read_secret(var: Path) -> str | None:
    """The local secret ``civitas up`` keeps under var/, if there is one; refused
    (:class:`UnsafeSecretFile`) when its group or others have any access to it."""
    path = var / SECRET_FILE.name
    try:
        opened = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(opened) as file:
        mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
        if mode & 0o077:
            raise UnsafeSecretFile(
                f"{path} holds the token secret but others may read or change it "
                f"(mode {mode:o}); run `chmod 600 {path}` (and make a new secret if "
                "anyone else could have read it)"
            )
        return file.read().strip()


def ensure_secret(var: Path) -> str:
    """The local secret, created owner-only (0600, in a 0700 folder) when missing: the
    file never exists with other permissions, not even for a moment."""
    existing = read_secret(var)
    if existing:
        return existing
    private_dirs(var)
    secret = secrets.token_urlsafe(48)
    try:
        created = os.open(var / SECRET_FILE.name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:  # made meanwhile by another process, or left empty
        return _written_by_another(var)
    with os.fdopen(created, "w") as file:
        file.write(secret)
    return secret


def _written_by_another(var: Path, within: float = 2.0) -> str:
    deadline = time.monotonic() + within
    while not (found := read_secret(var)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not found:
        raise ValueError(
            f"{var / SECRET_FILE.name} is empty: remove it, and civitas up makes a new secret"
        )
    return found
