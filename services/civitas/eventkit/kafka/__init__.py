"""Kafka: the relay that publishes a service's events, and the Kafka feed for consumers."""

from .envelope import EventEnvelope, decode_message, encode_event
from .feed import KafkaFeed
from .relay import Relay
from .topics import TopicSpec, ensure_topics, events_topic

__all__ = [
    "EventEnvelope",
    "KafkaFeed",
    "Relay",
    "TopicSpec",
    "decode_message",
    "encode_event",
    "ensure_topics",
    "events_topic",
]
