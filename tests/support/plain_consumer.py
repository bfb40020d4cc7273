"""A consumer written in another codebase: it reads Civitas's events topics with a plain
Kafka client (kafka-python) and checks every message's data against the schema files it
vendored (a copy of ``services/civitas/contracts/events``), with the reference JSON
Schema validator. It imports no Civitas code: run it as a script, as such a team would.

``python plain_consumer.py <bootstrap> <schemas folder> <topic>...`` prints one JSON
object: the event types seen on each topic, the messages read, the problems found, and
the Civitas modules it ended up importing (none).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
from kafka import KafkaConsumer, TopicPartition

Validators = dict[tuple[str, int], jsonschema.Draft202012Validator]


def vendored(folder: Path) -> Validators:
    """A validator per event type and schema version, as each schema file states them."""
    validators = {}
    for path in folder.rglob("*.json"):
        schema = json.loads(path.read_text(encoding="utf-8"))
        key = (schema["x-civitas-event-type"], schema["x-civitas-schema-version"])
        checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
        validators[key] = jsonschema.Draft202012Validator(schema, format_checker=checker)
    return validators


def every_message(bootstrap: str, topics: list[str]) -> list[tuple[str, bytes]]:
    """Every message on the topics now, from the beginning, without a consumer group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        found: list[tuple[str, bytes]] = []
        while any(consumer.position(p) < end for p, end in ends.items()):
            for records in consumer.poll(timeout_ms=1000).values():
                found += [(record.topic, record.value) for record in records]
        return found
    finally:
        consumer.close()


def problem(validators: Validators, envelope: dict[str, Any]) -> str | None:
    key = (envelope["type"], envelope["schema_version"])
    if key not in validators:
        return f"no schema for {key[0]} v{key[1]}"
    error = jsonschema.exceptions.best_match(validators[key].iter_errors(envelope["data"]))
    return None if error is None else f"{key[0]} v{key[1]}: {error.json_path}: {error.message}"


def main(bootstrap: str, folder: str, *topics: str) -> None:
    validators = vendored(Path(folder))
    seen: dict[str, set[str]] = {topic: set() for topic in topics}
    problems = []
    messages = every_message(bootstrap, list(topics))
    for topic, value in messages:
        envelope = json.loads(value)
        seen[topic].add(envelope["type"])
        found = problem(validators, envelope)
        if found is not None:
            problems.append(f"{topic}: {found}")
    report = {
        "seen": {topic: sorted(types) for topic, types in seen.items()},
        "messages": len(messages),
        "problems": problems,
        "civitas_modules": sorted(m for m in sys.modules if m.partition(".")[0] == "civitas"),
    }
    sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
