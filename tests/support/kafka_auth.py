"""The local SASL/SCRAM broker with ACLs (``KAFKA_AUTH=scram make kafka-up``): who may
connect as whom, with the passwords kafka-up.sh made, one file per principal."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from civitas.eventkit.kafka.security import KafkaSecurity

ADMIN = "civitas-admin"  # the super user that creates topics' ACLs


@dataclass(frozen=True, slots=True)
class ScramBroker:
    """The authenticated broker: its bootstrap address and the folder of passwords."""

    bootstrap: str
    secrets: Path

    def security(self, principal: str, password: str | None = None) -> KafkaSecurity:
        """Client settings to connect as ``principal`` (with its own password, unless
        another is given)."""
        if password is None:
            password = (self.secrets / f"{principal}.password").read_text().strip()
        return KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", principal, password)

    def as_admin(self) -> dict[str, Any]:
        """kafka-python's arguments to reach the broker as the super user."""
        return {"bootstrap": self.bootstrap, **self.security(ADMIN).kafka_python()}
