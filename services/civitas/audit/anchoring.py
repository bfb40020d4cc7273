"""``civitas audit anchor``, ``verify --anchor``, ``prove`` and ``check-proof``: signed
digests of each service's store, and proofs that one event is in it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from civitas.chassis.anchoring import AnchorSettings
from civitas.chassis.settings import environment
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
from civitas.eventkit.records import stream_parts

from .commands import keepers_present, known_service, open_store, owner_of


def _settings(service: str, var: Path) -> AnchorSettings:
    return AnchorSettings.of(service, var, environment())


async def anchor(services: list[str], var: Path, public_key: bool) -> int:
    """Print each service's current digest, signed (or the public key that checks it)."""
    for service in keepers_present(services, var):
        key = load_or_create_key(_settings(known_service(service), var).key_file)
        if public_key:
            print(f"{service} ed25519 {public_raw(key.public_key()).hex()}")
            continue
        store = await open_store(service, var)
        try:
            digest = await StoreTree().catch_up(store)
        finally:
            await store.close()
        print(sign(key, service, digest, SystemClock().now()).to_json())
    return 0


def _anchors_of(given: str) -> list[Anchor]:
    """An anchors file's anchors (each signed), or one digest: a signed anchor's JSON, or
    the unsigned text form ``<service> <size> <root>``."""
    path = Path(given)
    try:
        is_file, exists = path.is_file(), path.exists()
    except OSError:  # a name too long for a file: a digest
        is_file = exists = False
    if is_file:
        try:
            with path.open() as lines:
                return read_anchors(lines)
        except (OSError, UnicodeDecodeError) as unreadable:
            raise AnchorError(f"cannot read {path}: {unreadable}") from None
    if exists:
        raise AnchorError(f"{path} is not an anchors file")
    return [parse_digest(given)]


async def verify_anchor(services: list[str], var: Path, given: str, public_key: str) -> int:
    """Check every signed anchor's signature, then that each service's store extends every
    one of its anchors. 1 when any does not, when a service asked for has no anchor to be
    checked against, or when an anchor is of a service not asked for."""
    anchors = _anchors_of(given)
    for service in services:
        known_service(service)
    named = sorted({a.service for a in anchors})
    for service in named:
        known_service(service)
    if stray := [s for s in named if services and s not in services]:
        print(f"anchors of {', '.join(stray)}, which was not asked for: not checked")
        return 1
    failed = 0
    if not (services or named):
        print(f"{given}: no anchors to check against")
        failed += 1
    for service in services or named:
        own = [a for a in anchors if a.service == service]
        if any(a.signature for a in own):
            key = read_public_key(public_key, _settings(service, var).key_file)
            for signed in (a for a in own if a.signature):
                signed.check(key)
        if not own:
            print(f"{service}: 0 anchors to check against")
            failed += 1
            continue
        store = await open_store(service, var)
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
    service = known_service(service or owner_of(stream_parts(stream_id)[0]))
    anchors_file = _settings(service, var).anchors_file
    anchors = _anchors_of(str(anchors_file)) if anchors_file.is_file() else []
    store = await open_store(service, var)
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
        if not isinstance(proof, dict):
            raise AnchorError("not a proof: not a JSON object")
        published = parse_digest(digest) if digest else None
        service = known_service(str(proof.get("service", "")))
        if published is not None:
            known_service(published.service)
        needs_key = published is None or bool(published.signature)
        key = read_public_key(public_key, _settings(service, var).key_file) if needs_key else None
        checked = check_proof(proof, published, key)
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as failed:
        print(f"civitas audit check-proof: the proof does not hold: {failed}", file=sys.stderr)
        return 1
    event = proof["event"]
    print(
        f"{event['stream_id']} revision {event['stream_version']} is event "
        f"{proof['leaf_index']:,} of {checked.service}'s log of {checked.tree_size:,} events "
        f"with root {checked.root}"
    )
    return 0
