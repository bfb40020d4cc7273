"""Merkle tree hashing, audit paths and their checks as RFC 6962 (RFC 9162) defines them.

Leaf hash ``SHA-256(0x00 || leaf)``, interior node ``SHA-256(0x01 || left || right)``,
the tree head MTH over ``n`` leaves splitting at the largest power of two below ``n``,
and the empty tree's head ``SHA-256("")``. Any RFC 6962 implementation (Certificate
Transparency's, Trillian's) computes the same heads and checks the same audit paths,
so a proof printed here can be checked without Civitas.

:class:`CompactRange` keeps only the roots of the perfect subtrees the leaves fill so
far (at most log2(n) hashes): appending a leaf and reading the head cost O(log n),
which lets a running service keep its tree head current without reading its store
again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """The hash of one leaf: ``SHA-256(0x00 || leaf)``."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly below ``size`` (``size`` > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def tree_head(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves whose hashes are given, in order."""
    size = len(leaf_hashes)
    if size == 0:
        return EMPTY_ROOT
    if size == 1:
        return leaf_hashes[0]
    k = _split(size)
    return node_hash(tree_head(leaf_hashes[:k]), tree_head(leaf_hashes[k:]))


def audit_path(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the sibling hashes from leaf ``index`` up to the head, leaf first."""
    if not 0 <= index < len(leaf_hashes):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaf_hashes)} leaves")
    path: list[bytes] = []
    while len(leaf_hashes) > 1:
        k = _split(len(leaf_hashes))
        if index < k:
            path.append(tree_head(leaf_hashes[k:]))
            leaf_hashes = leaf_hashes[:k]
        else:
            path.append(tree_head(leaf_hashes[:k]))
            leaf_hashes, index = leaf_hashes[k:], index - k
    path.reverse()
    return path


def root_from_path(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """The head that leaf hash ``leaf`` at ``index`` and its audit ``path`` lead to in a tree
    of ``size`` leaves (RFC 9162, 2.1.3.2); None when the path cannot be one for that
    place (too short, too long, an index outside the tree)."""
    if not 0 <= index < size or any(len(p) != HASH_SIZE for p in path):
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


class CompactRange:
    """The head of a growing tree from the roots of its perfect subtrees (a Merkle
    frontier): feed leaf hashes in order, read :meth:`root` at any time."""

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[bytes] = []  # one per 1-bit of ``size``, largest subtree first

    def append(self, leaf: bytes) -> None:
        """Add the next leaf's hash."""
        self._peaks.append(leaf)
        size = self.size
        while size & 1:  # each carry merges two equal perfect subtrees
            right = self._peaks.pop()
            self._peaks[-1] = node_hash(self._peaks[-1], right)
            size >>= 1
        self.size += 1

    def root(self) -> bytes:
        """MTH of the leaves fed so far."""
        if not self._peaks:
            return EMPTY_ROOT
        root = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            root = node_hash(peak, root)
        return root
