"""Signed anchors: a store's global digest, kept where the database's writers cannot reach.

The digest is the RFC 6962 Merkle tree head over every stored event in global order
(leaf ``i`` is the ``i``-th row by position; see :func:`leaf_bytes`). An anchor signs
``(service, tree size, root, last position, time)`` with an Ed25519 key kept in a file,
never in the database, so whoever rewrites the database and recomputes every hash in it
still cannot produce a tree with the anchored root, nor a new anchor. Anchors go to an
append-only local file (one JSON line each, fsynced) and, where Kafka is configured, to
the service's anchors topic.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .audit import RawEvent
from .files import PRIVATE_FILE, private_dirs
from .hashing import canonical_json
from .merkle import EMPTY_ROOT, CompactRange, leaf_hash
from .store import EventStore

ANCHOR_VERSION = 1
READ_BATCH = 5000


class AnchorError(ValueError):
    """An anchor, digest, key or proof that cannot be read, or does not check."""


def leaf_bytes(position: int, stream_id: str, stream_version: int, stream_hash: bytes) -> bytes:
    """One event's leaf: its global position, stream, revision and stream hash as canonical
    JSON. The stream hash covers the event's every field and its stream's history."""
    return canonical_json([position, stream_id, stream_version, bytes(stream_hash).hex()]).encode()


def row_leaf_hash(row: RawEvent) -> bytes:
    """The RFC 6962 leaf hash of one stored row."""
    return leaf_hash(leaf_bytes(row.position, row.stream_id, row.stream_version, row.hash))


@dataclass(frozen=True, slots=True)
class Digest:
    """A store's tree head: how many events it covers, up to which position, its root."""

    tree_size: int
    root: bytes
    last_position: int


class StoreTree:
    """A store's Merkle tree head, kept current by feeding only the rows added since the
    last call. ``expect`` maps tree sizes to roots the store must reproduce (anchors);
    each one it does not is recorded in :attr:`mismatches`."""

    def __init__(self, expect: Mapping[int, bytes] | None = None) -> None:
        self._range = CompactRange()
        self._last_position = 0
        self._expect = dict(expect or {})
        self.mismatches: list[tuple[int, bytes]] = []

    @property
    def size(self) -> int:
        return self._range.size

    def digest(self) -> Digest:
        return Digest(self._range.size, self._range.root(), self._last_position)

    def feed(self, row: RawEvent) -> None:
        self._range.append(row_leaf_hash(row))
        self._last_position = row.position
        expected = self._expect.get(self._range.size)
        if expected is not None and expected != self._range.root():
            self.mismatches.append((self._range.size, self._range.root()))

    async def catch_up(self, store: EventStore, *, upto: int | None = None) -> Digest:
        """Feed the rows after the last one fed, up to the store's head position (what
        every reader may see, so no late commit can land below it), or ``upto``."""
        head = await store.head_position() if upto is None else upto
        while self._last_position < head:
            rows = await store._read_raw(self._last_position, READ_BATCH)
            for row in rows:
                if row.position > head:
                    return self.digest()
                self.feed(row)
            if len(rows) < READ_BATCH:
                break
        return self.digest()


@dataclass(frozen=True, slots=True)
class Anchor:
    """A signed digest (``signature`` empty: a digest published unsigned)."""

    service: str
    tree_size: int
    root: str
    last_position: int
    signed_at: str
    key_id: str
    signature: str = field(default="", compare=False)
    version: int = ANCHOR_VERSION

    def payload(self) -> bytes:
        """What the signature covers: every field but the signature, canonical JSON."""
        body = asdict(self)
        del body["signature"]
        return canonical_json(body).encode()

    def to_json(self) -> str:
        return canonical_json(asdict(self))

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> Anchor:
        """A signed anchor from its JSON (a line of an anchors file, a Kafka message, a
        proof's anchor). Every field is checked for its type; an unsigned one is refused:
        only :func:`parse_digest`'s text form makes an unsigned digest."""
        try:
            data = json.loads(text) if isinstance(text, str) else text
        except (ValueError, RecursionError) as unreadable:
            raise AnchorError(f"not a Civitas anchor: not JSON ({unreadable})") from None
        anchor = _anchor_of(data)
        if not anchor.signature:
            raise AnchorError(
                f"the anchor at tree size {anchor.tree_size} is not signed: an anchor read "
                "from JSON must be; only '<service> <tree_size> <root hex>' may be unsigned"
            )
        return anchor

    def check(self, public_key: Ed25519PublicKey) -> None:
        """Raise :class:`AnchorError` unless this anchor is signed by ``public_key``."""
        if not self.signature:
            raise AnchorError(f"the anchor at tree size {self.tree_size} is not signed")
        if self.key_id != key_id(public_key):
            raise AnchorError(
                f"the anchor at tree size {self.tree_size} is signed with key {self.key_id}, "
                f"not with {key_id(public_key)}"
            )
        try:
            public_key.verify(base64.b64decode(self.signature, validate=True), self.payload())
        except (InvalidSignature, ValueError):
            raise AnchorError(
                f"the anchor at tree size {self.tree_size} has a forged or damaged signature"
            ) from None


def _anchor_of(data: object) -> Anchor:
    """An anchor from decoded JSON, every field of its type, or :class:`AnchorError`."""
    if not isinstance(data, Mapping):
        raise AnchorError("not a Civitas anchor: not a JSON object")
    names = set(_FIELDS)
    missing = sorted(names - {"signature", "version"} - set(data))
    unknown = sorted(str(name) for name in set(data) - names)
    if missing or unknown:
        raise AnchorError(f"not a Civitas anchor: missing {missing}, unknown {unknown}")
    fields = {**{"signature": "", "version": ANCHOR_VERSION}, **data}
    for name, kind in _FIELDS.items():
        value = fields[name]
        if kind is int and (type(value) is not int or value < 0):
            raise AnchorError(f"not a Civitas anchor: {name} must be a whole number >= 0")
        if kind is str and not isinstance(value, str):
            raise AnchorError(f"not a Civitas anchor: {name} must be a string")
    if fields["version"] != ANCHOR_VERSION:
        raise AnchorError(f"not a version {ANCHOR_VERSION} anchor: version {fields['version']}")
    if not _HEX_ROOT.fullmatch(fields["root"]):
        raise AnchorError("not a Civitas anchor: root must be 64 lowercase hex digits")
    if fields["signature"]:
        try:
            raw = base64.b64decode(fields["signature"], validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 64:
            raise AnchorError("not a Civitas anchor: signature must be 64 bytes in base64")
    return Anchor(**fields)


_FIELDS = {
    "service": str,
    "tree_size": int,
    "root": str,
    "last_position": int,
    "signed_at": str,
    "key_id": str,
    "signature": str,
    "version": int,
}
_HEX_ROOT = re.compile(r"[0-9a-f]{64}")


def parse_digest(text: str) -> Anchor:
    """A published digest: a signed anchor's JSON line, or ``<service> <tree_size> <root>``
    (unsigned; it is as good as the place it was published, and the only unsigned form)."""
    text = text.strip()
    if text.startswith("{"):
        return Anchor.from_json(text)
    parts = text.split()
    if len(parts) != 3 or not parts[1].isascii() or not parts[1].isdigit():
        raise AnchorError(f"not a digest ('<service> <tree_size> <root hex>' or JSON): {text!r}")
    data = {"service": parts[0], "tree_size": int(parts[1]), "root": parts[2].lower()}
    return _anchor_of({**data, "last_position": 0, "signed_at": "", "key_id": ""})


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 8 bytes of SHA-256 of its raw bytes, hex."""
    return hashlib.sha256(public_raw(public_key)).hexdigest()[:16]


def public_raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key in ``path`` (PEM, PKCS #8), created owner-only when missing: written
    to a private temporary file first and linked into place, so that the file is never seen
    half written and two processes starting together end up with the same key."""
    if not path.exists():
        private_dirs(path.parent)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".anchor-key-")
        try:
            os.write(handle, pem)
            os.fsync(handle)
            os.close(handle)
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it meanwhile: use theirs
        finally:
            os.unlink(temporary)
    return _private_key(path)


def _private_key(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise AnchorError(f"{path} holds the anchor key but others may read it (mode {mode:o})")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm, OSError):
        raise AnchorError(f"{path} does not hold a readable PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AnchorError(f"{path} does not hold an Ed25519 private key")
    return key


def read_public_key(text: str, default_key_file: Path | None = None) -> Ed25519PublicKey:
    """A public key given as 64 hex digits, a PEM file, or else the local key file's."""
    candidate = Path(text) if text else default_key_file
    if text and not Path(text).exists():
        try:
            return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
        except ValueError:
            raise AnchorError(f"not a public key (64 hex digits or a PEM file): {text!r}") from None
    if candidate is None or not candidate.exists():
        raise AnchorError("no public key: pass --public-key (64 hex digits or a PEM file)")
    try:
        data = candidate.read_bytes()
        if b"PRIVATE KEY" in data:
            return _private_key(candidate).public_key()
        key = serialization.load_pem_public_key(data)
    except AnchorError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm, OSError):
        raise AnchorError(f"{candidate} does not hold a readable PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AnchorError(f"{candidate} does not hold an Ed25519 key")
    return key


def sign(key: Ed25519PrivateKey, service: str, digest: Digest, at: datetime) -> Anchor:
    """An anchor over ``digest``, signed now."""
    unsigned = Anchor(
        service=service,
        tree_size=digest.tree_size,
        root=digest.root.hex(),
        last_position=digest.last_position,
        signed_at=at.isoformat(timespec="seconds"),
        key_id=key_id(key.public_key()),
    )
    signature = base64.b64encode(key.sign(unsigned.payload())).decode()
    return Anchor(**{**asdict(unsigned), "signature": signature})


def append_anchor(path: Path, anchor: Anchor) -> None:
    """Append one anchor as a JSON line to an owner-only file and fsync it."""
    private_dirs(path.parent)
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    try:
        os.write(handle, (anchor.to_json() + "\n").encode())
        os.fsync(handle)
    finally:
        os.close(handle)


def read_anchors(lines: Iterable[str]) -> list[Anchor]:
    """The anchors of an anchors file's lines (blank lines skipped), oldest first."""
    anchors = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                anchors.append(Anchor.from_json(line))
            except AnchorError as bad:
                raise AnchorError(f"line {number}: {bad}") from None
    return anchors


def anchors_topic(service: str, namespace: str = "civitas") -> str:
    """The Kafka topic a service publishes its anchors on: ``civitas.<service>.anchors.v1``."""
    return f"{namespace}.{service}.anchors.v1"


async def unextended(store: EventStore, anchors: Iterable[Anchor]) -> list[str]:
    """What in ``anchors`` the store does not extend, one sentence each (none: it extends
    every one). Signatures are the caller's to check."""
    anchors = list(anchors)
    expect: dict[int, bytes] = {}
    problems = []
    for anchor in anchors:
        root = bytes.fromhex(anchor.root)
        if expect.setdefault(anchor.tree_size, root) != root:
            problems.append(f"two anchors of tree size {anchor.tree_size} disagree on its root")
    tree = StoreTree(expect)
    await tree.catch_up(store)
    wrong = dict(tree.mismatches)
    for anchor in anchors:
        said = f"the anchor of {anchor.signed_at or 'a published digest'}"
        if anchor.tree_size > tree.size:
            problems.append(
                f"{said} covers {anchor.tree_size:,} events, the store holds {tree.size:,}: "
                "events were deleted"
            )
        elif anchor.tree_size in wrong or (
            anchor.tree_size == 0 and anchor.root != EMPTY_ROOT.hex()
        ):
            found = wrong.get(anchor.tree_size, b"").hex()
            problems.append(
                f"{said} says the first {anchor.tree_size:,} events hash to {anchor.root}, the "
                f"store's hash to {found}: events up to position {anchor.last_position} "
                "were changed, inserted, deleted or reordered"
            )
    return problems
