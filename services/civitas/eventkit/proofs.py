"""A proof that one event is in a store's log at a given tree size (RFC 6962 inclusion).

The proof carries the event's stored fields, the stream hash it chains from, its leaf
index, the tree size, the audit path and the root, and the anchor it refers to when one
covers it. :func:`check_proof` needs nothing else: it recomputes the content digest, the
stream hash, the leaf hash and the root, and compares the root with a published digest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .anchors import Anchor, AnchorError, leaf_bytes, row_leaf_hash
from .audit import RawEvent
from .hashing import GENESIS, chain, utc_iso
from .merkle import audit_path, leaf_hash, root_from_path, tree_head
from .store import EventStore

PROOF_VERSION = 1
EVENT_FIELDS = (
    "position",
    "stream_id",
    "stream_version",
    "event_id",
    "type",
    "schema_version",
    "occurred_at",
    "actor",
    "correlation_id",
    "causation_id",
    "data",
)


async def prove(
    store: EventStore,
    service: str,
    stream_id: str,
    revision: int,
    anchors: Sequence[Anchor] = (),
) -> dict[str, Any]:
    """The inclusion proof of ``stream_id`` at ``revision``: against the oldest anchor
    that covers it, else against the store's current tree head (``anchor`` None)."""
    leaves: list[bytes] = []
    found: tuple[int, RawEvent, bytes] | None = None
    previous = GENESIS
    head = await store.head_position()
    after = 0
    while after < head and (rows := await store._read_raw(after, 5000)):
        for row in rows:
            if row.position > head:
                break
            if row.stream_id == stream_id and row.stream_version == revision - 1:
                previous = bytes(row.hash)
            if row.stream_id == stream_id and row.stream_version == revision:
                found = (len(leaves), row, previous)
            leaves.append(row_leaf_hash(row))
        after = rows[-1].position
    if found is None:
        raise AnchorError(f"{stream_id} has no revision {revision} in the {service} store")
    index, row, previous = found
    anchor = next((a for a in anchors if index < a.tree_size <= len(leaves)), None)
    size = anchor.tree_size if anchor else len(leaves)
    return {
        "version": PROOF_VERSION,
        "service": service,
        "event": _fields(row),
        "previous_hash": previous.hex(),
        "hash": bytes(row.hash).hex(),
        "leaf_index": index,
        "tree_size": size,
        "audit_path": [p.hex() for p in audit_path(index, leaves[:size])],
        "root": tree_head(leaves[:size]).hex(),
        "anchor": json.loads(anchor.to_json()) if anchor else None,
    }


def _fields(row: RawEvent) -> dict[str, Any]:
    fields = {name: getattr(row, name) for name in EVENT_FIELDS}
    fields["event_id"] = str(row.event_id)
    fields["occurred_at"] = utc_iso(row.moment)
    return fields


def event_digest(event: Mapping[str, Any]) -> bytes:
    """The content digest of a proof's event (its fields as :func:`prove` writes them)."""
    fields = {name: event[name] for name in EVENT_FIELDS}
    fields["schema_version"] = int(fields["schema_version"])
    return RawEvent(**fields, hash=b"").content_digest()


def check_proof(
    proof: Mapping[str, Any],
    digest: Anchor | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> Anchor:
    """Check a proof against ``digest`` (a published one; default: the anchor the proof
    carries). An anchor the proof carries is always signed and its signature checked; only
    a ``digest`` the caller gives (the text form ``<service> <size> <root>`` of
    :func:`~civitas.eventkit.anchors.parse_digest`) may be unsigned. Returns the digest it
    checked against; raises :class:`AnchorError` naming the first thing that fails."""
    try:
        event, index, size = proof["event"], _whole(proof["leaf_index"]), _whole(proof["tree_size"])
        stream_hash = chain(bytes.fromhex(proof["previous_hash"]), event_digest(event))
        path = [bytes.fromhex(p) for p in proof["audit_path"]]
        leaf = leaf_bytes(
            int(event["position"]), event["stream_id"], event["stream_version"], stream_hash
        )
        claimed_root = bytes.fromhex(proof["root"])
    except (KeyError, TypeError, ValueError, AttributeError) as unreadable:
        raise AnchorError(f"not a readable proof: {unreadable!r}") from None
    if stream_hash.hex() != proof.get("hash"):
        raise AnchorError("the event's fields do not hash to the stream hash the proof states")
    root = root_from_path(index, size, leaf_hash(leaf), path)
    if root != claimed_root:
        raise AnchorError("the audit path does not lead from the event's leaf to the proof's root")
    return _check_against(proof, root, size, digest, public_key)


def _whole(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{value!r} is not a whole number >= 0")
    return value


def _check_against(
    proof: Mapping[str, Any],
    root: bytes,
    size: int,
    digest: Anchor | None,
    public_key: Ed25519PublicKey | None,
) -> Anchor:
    if digest is None:
        if not proof.get("anchor"):
            raise AnchorError("no anchor covers this proof: pass the published --digest")
        digest = Anchor.from_json(proof["anchor"])  # refuses an unsigned one
    if digest.signature:  # always, for the proof's own anchor and a signed --digest
        if public_key is None:
            raise AnchorError("the anchor is signed: pass --public-key to check it")
        digest.check(public_key)
    # else: an unsigned digest the user gave, as good as where it was published
    if digest.service != proof.get("service"):
        raise AnchorError(f"the digest is {digest.service}'s, the proof {proof.get('service')}'s")
    if digest.tree_size != size or digest.root != root.hex():
        raise AnchorError(
            f"the proof's root at tree size {size} is not the digest's ({digest.tree_size} "
            f"events, root {digest.root})"
        )
    return digest
