"""A consumer written in another codebase: it reads Civitas's events topics with a plain
Kafka client (kafka-python) and checks every message's data against the schema files it
vendored (a copy of ``services/civitas/contracts/events``), and every whole message
against its message in the AsyncAPI document, with the reference JSON Schema validator.
It imports no Civitas code: run it as a script, as such a team would.

``python plain_consumer.py <bootstrap> <schemas folder> <asyncapi.json> <topic>...``
prints one JSON object: the event types seen on each topic, the messages read, the
problems found, and the Civitas modules it ended up importing (none).
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


def messages_of(document_path: Path) -> dict[str, jsonschema.Draft202012Validator]:
    """A validator per message of the AsyncAPI document (named as the event type), for
    the whole envelope; references resolve within the document."""
    document = json.loads(document_path.read_text(encoding="utf-8"))
    return {
        name: jsonschema.Draft202012Validator(
            document | {"$ref": f"#/components/messages/{name}/payload"}
        )
        for name in document["components"]["messages"]
    }


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


def problems_of(
    validators: Validators,
    messages: dict[str, jsonschema.Draft202012Validator],
    envelope: dict[str, Any],
) -> list[str]:
    """What is wrong with one message: its data by the schema file, its envelope by
    the AsyncAPI message of its type."""
    key = (envelope["type"], envelope["schema_version"])
    if key not in validators or key[0] not in messages:
        return [f"no schema for {key[0]} v{key[1]}"]
    errors = [*validators[key].iter_errors(envelope["data"])]
    errors += messages[key[0]].iter_errors(envelope)
    return [f"{key[0]} v{key[1]}: {error.json_path}: {error.message}" for error in errors]


def main(bootstrap: str, folder: str, document: str, *topics: str) -> None:
    validators, messages = vendored(Path(folder)), messages_of(Path(document))
    seen: dict[str, set[str]] = {topic: set() for topic in topics}
    problems = []
    read = every_message(bootstrap, list(topics))
    for topic, value in read:
        envelope = json.loads(value)
        seen[topic].add(envelope["type"])
        problems += [f"{topic}: {found}" for found in problems_of(validators, messages, envelope)]
    report = {
        "seen": {topic: sorted(types) for topic, types in seen.items()},
        "messages": len(read),
        "problems": problems,
        "civitas_modules": sorted(m for m in sys.modules if m.partition(".")[0] == "civitas"),
    }
    sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
