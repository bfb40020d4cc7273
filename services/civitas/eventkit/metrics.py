"""Prometheus metrics of the shared machinery, defined once for every service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RELAY_LAG = Gauge(
    "civitas_relay_lag_events",
    "Events in the store that the relay has not published yet (store head - relayed position)",
    ["topic"],
)
RELAY_POSITION = Gauge(
    "civitas_relay_position", "Global store position the relay has published up to", ["topic"]
)
EVENTS_PUBLISHED = Counter(
    "civitas_events_published_total",
    "Events the relay published and the broker acknowledged",
    ["topic"],
)
CONSUMER_LAG = Gauge(
    "civitas_consumer_lag_messages",
    "Messages on the topic not yet consumed by the group (high watermark - position)",
    ["group", "topic"],
)
DEAD_LETTERS = Counter(
    "civitas_dead_letters_total",
    "Messages a consumer could not decode and set aside",
    ["group", "topic"],
)
