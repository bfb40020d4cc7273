"""How a Kafka client proves who it is: one value, given to every client a process builds.

Each client library spells the same settings its own way (aiokafka and FastStream take
an SSL context, kafka-python a CA file); :class:`KafkaSecurity` is read once from the
settings and turned into each spelling here, so that no client is built without it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """The protocol, and for SASL the mechanism, principal, password and (over TLS) the
    CA that signed the broker's certificate. The password never shows in a repr."""

    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(
                f"a Kafka security protocol is one of {PROTOCOLS}, not {self.protocol!r}"
            )
        if self.mechanism not in MECHANISMS:
            raise ValueError(
                f"a Kafka SASL mechanism is one of {tuple(MECHANISMS)}, not {self.mechanism!r}"
            )
        if self.sasl and not (self.username and self.password):
            raise ValueError(f"Kafka over {self.protocol} needs a username and a password")

    @property
    def sasl(self) -> bool:
        """Whether the client authenticates (over SASL_PLAINTEXT or SASL_SSL)."""
        return self.protocol != "PLAINTEXT"

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.protocol != "SASL_SSL":
            return None
        return ssl.create_default_context(cafile=self.ca_file)

    def _sasl(self) -> dict[str, Any]:
        return {
            "security_protocol": self.protocol,
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
        }

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        return {**self._sasl(), "ssl_context": self._ssl_context()} if self.sasl else {}

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's producer, consumer and admin client."""
        return {**self._sasl(), "ssl_cafile": self.ca_file} if self.sasl else {}

    def faststream(self) -> BaseSecurity | None:
        """The security object FastStream's ``KafkaBroker`` takes (None: plaintext)."""
        if not self.sasl:
            return None
        assert self.username is not None  # checked when made
        assert self.password is not None
        scheme = MECHANISMS[self.mechanism]
        return scheme(self.username, self.password, ssl_context=self._ssl_context())


PLAINTEXT = KafkaSecurity()
"""No authentication: the embedded default and the local test broker on 9092."""
