"""Wait until a Kafka broker answers a metadata request; exit 1 if it never does.

With ``--sasl-user`` it asks as that SCRAM-SHA-512 principal (the password read from
``--password-file``), for a broker that refuses anonymous clients."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from civitas.eventkit.kafka.security import KafkaSecurity


def credentials(user: str | None, password_file: Path | None) -> dict[str, Any]:
    if not user:
        return {}
    if password_file is None:
        raise SystemExit("--sasl-user needs --password-file")
    password = password_file.read_text().strip()
    return KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", user, password).kafka_python()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--sasl-user")
    parser.add_argument("--password-file", type=Path)
    args = parser.parse_args()
    auth = credentials(args.sasl_user, args.password_file)
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=args.bootstrap, request_timeout_ms=3000, **auth
            )
            try:
                admin.list_topics()
                return 0
            finally:
                admin.close()
        except (KafkaError, OSError, ValueError):
            if time.monotonic() >= deadline:
                return 1
            time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
