"""``civitas audit anchor``, ``verify --anchor``, ``prove`` and ``check-proof``: signed
digests of each service's store, and proofs that one event is in it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from civitas.chassis.anchoring import AnchorSettings
from civitas.eventkit import open_event_store
from civitas.eventkit.anchors import (
    Anchor,
    AnchorError,
    StoreTree,
    load_or_create_key,
    parse_digest,
    public_raw,
    read_anchors,
    read_public_key,
    sign,
    unextended,
)
from civitas.eventkit.clock import SystemClock
from civitas.eventkit.proofs import check_proof, prove

from .commands import EVENT_KEEPERS, owner_of, store_url


def _settings(service: str, var: Path) -> AnchorSettings:
    return AnchorSettings.of(service, var, {**os.environ, "CIVITAS_VAR_DIR": str(var)})


async def anchor(services: list[str], var: Path, public_key: bool) -> int:
    """Print each service's current digest, signed (or the public key that checks it)."""
    for service in services or EVENT_KEEPERS:
        key = load_or_create_key(_settings(service, var).key_file)
        if public_key:
            print(f"{service} ed25519 {public_raw(key.public_key()).hex()}")
            continue
        store = await open_event_store(store_url(service, var))
        try:
            digest = await StoreTree().catch_up(store)
        finally:
            await store.close()
        print(sign(key, service, digest, SystemClock().now()).to_json())
    return 0


def _anchors_of(given: str) -> list[Anchor]:
    path = Path(given)
    if path.is_file():
        with path.open() as lines:
            return read_anchors(lines)
    return [parse_digest(given)]


async def verify_anchor(services: list[str], var: Path, given: str, public_key: str) -> int:
    """Check the anchors' signatures, then that each service's store extends every one of
    its anchors; 1 when any does not."""
    anchors = _anchors_of(given)
    failed = 0
    for service in services or sorted({a.service for a in anchors}):
        own = [a for a in anchors if a.service == service]
        if any(a.signature for a in own):
            key = read_public_key(public_key, _settings(service, var).key_file)
            for signed in own:
                signed.check(key)
        store = await open_event_store(store_url(service, var))
        try:
            problems = await unextended(store, own)
        finally:
            await store.close()
        covered = max((a.tree_size for a in own), default=0)
        verdict = f"{len(problems)} anchors not extended" if problems else "extends them"
        print(f"{service}: {len(own)} anchors, the last over {covered:,} events: {verdict}")
        for problem in problems:
            print(f"  {problem}")
        failed += len(problems)
    return 1 if failed else 0


async def prove_event(stream_id: str, revision: int, service: str | None, var: Path) -> int:
    """Print the inclusion proof of one event, against the oldest anchor covering it."""
    service = service or owner_of(stream_id.partition("-")[0])
    anchors_file = _settings(service, var).anchors_file
    anchors = _anchors_of(str(anchors_file)) if anchors_file.is_file() else []
    store = await open_event_store(store_url(service, var))
    try:
        proof = await prove(store, service, stream_id, revision, anchors)
    finally:
        await store.close()
    print(json.dumps(proof, ensure_ascii=False, indent=2))
    return 0


def check_proof_file(proof_file: str, digest: str | None, public_key: str, var: Path) -> int:
    """Check a proof alone (no store); 1 with what failed."""
    try:
        proof = json.loads(Path(proof_file).read_text())
        published = parse_digest(digest) if digest else None
        service = str(proof.get("service", ""))
        needs_key = published is None or bool(published.signature)
        key = read_public_key(public_key, _settings(service, var).key_file) if needs_key else None
        checked = check_proof(proof, published, key)
    except (AnchorError, OSError, ValueError, AttributeError) as failed:
        print(f"civitas audit check-proof: the proof does not hold: {failed}", file=sys.stderr)
        return 1
    event = proof["event"]
    print(
        f"{event['stream_id']} revision {event['stream_version']} is event "
        f"{proof['leaf_index']:,} of {checked.service}'s log of {checked.tree_size:,} events "
        f"with root {checked.root}"
    )
    return 0
