"""Prometheus metrics of the shared machinery, defined once for every service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
EVENTS_APPENDED = Counter(
    "civitas_events_appended_total",
    "Events appended to the event store (an idempotent re-append counts again)",
    ["category"],
)
SNAPSHOTS_REJECTED = Counter(
    "civitas_snapshots_rejected_total",
    "Snapshots a repository did not trust and rebuilt from events instead: bound to a hash "
    "their stream does not have (reason=mismatch), or from before bindings (reason=unbound)",
    ["category", "reason"],
)
APPEND_SECONDS = Histogram(
    "civitas_append_seconds",
    "Time to append one batch of events to a stream, commit included",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
PROJECTION_LAG = Gauge(
    "civitas_projection_lag_seconds",
    "Time from an event's occurrence to its application, for the last event a consumer "
    "applied (projections and process managers)",
    ["projection"],
)
PROJECTION_DELAY = Histogram(
    "civitas_projection_delay_seconds",
    "Time from each event's occurrence to its application by a consumer",
    ["projection"],
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30),
)
PROJECTION_EVENTS = Counter(
    "civitas_projection_events_total",
    "Events a projection or process manager applied (redeliveries passed over not counted)",
    ["projection"],
)
CONSUMER_FAILURES = Counter(
    "civitas_consumer_failures_total",
    "Events a consumer failed on: retried while a peer says not now (reason=retry), refused "
    "for good (reason=gave_up), or a handler's failed attempt (reason=failed; parked after "
    "the last); also batches Kafka redelivers (nack) and loops restarted (restart)",
    ["consumer", "reason"],
)
ANCHOR_LAST_SUCCESS = Gauge(
    "civitas_anchor_last_success_timestamp_seconds",
    "When the anchoring task last did its work: signed the store's grown tree head, or found "
    "nothing new to sign (set when the task starts). Stale while anchoring is refused",
    ["service"],
)
ANCHORING_REFUSALS = Counter(
    "civitas_anchoring_refusals_total",
    "Periods the anchoring task did not sign or publish: the store does not extend the last "
    "anchor (not_extended), the anchors file is missing or behind the anchors topic "
    "(file_behind), the topic could not be read (topic_unreadable), a publish to Kafka "
    "failed (publish_failed), or another error (error)",
    ["service", "reason"],
)
CONSUMER_BEHIND_MESSAGES = Gauge(
    "civitas_consumer_behind_messages",
    "Messages a consumer (projection or process manager) has not handled yet, probed every "
    "few seconds whether batches come or not: store head - its position (0 when none of "
    "them is for it), or on Kafka the high watermarks - the group's committed offsets",
    ["consumer"],
)
CONSUMER_BEHIND_SECONDS = Gauge(
    "civitas_consumer_behind_seconds",
    "Age of the oldest event a consumer has not handled yet (0 when caught up), probed every "
    "few seconds: grows while a consumer does not advance, whatever the reason",
    ["consumer"],
)
EVENTS_PARKED = Counter(
    "civitas_events_parked_total",
    "Events a consumer parked instead of applying, by kind: undecodable, invalid, failed "
    "(its handler, every attempt), gap (a version beyond the next), out_of_order, origin "
    "(another store), behind (an earlier event of its stream is parked)",
    ["consumer", "reason"],
)
PARKED_EVENTS = Gauge(
    "civitas_parked_events",
    "Events a consumer holds parked now (civitas dlq list), retry requested included",
    ["consumer"],
)
