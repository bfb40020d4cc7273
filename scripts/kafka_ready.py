"""Wait until a Kafka broker answers a metadata request; exit 1 if it never does."""

from __future__ import annotations

import argparse
import sys
import time

from kafka import KafkaAdminClient
from kafka.errors import KafkaError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=3000)
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
