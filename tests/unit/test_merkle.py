"""The Merkle tree against RFC 6962's reference vectors (Certificate Transparency's and
Trillian's test data), and every audit path of many tree sizes."""

from __future__ import annotations

import pytest

from civitas.eventkit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    audit_path,
    leaf_hash,
    root_from_path,
    tree_head,
)

LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index from 0, tree size, audit path) from the same reference data.
PATHS = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
]
HASHES = [leaf_hash(leaf) for leaf in LEAVES]


def test_tree_heads_of_0_to_8_leaves_are_rfc_6962s() -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0]
    compact = CompactRange()
    for size in range(len(LEAVES) + 1):
        assert tree_head(HASHES[:size]).hex() == ROOTS[size]
        assert compact.root().hex() == ROOTS[size]
        if size < len(LEAVES):
            compact.append(HASHES[size])


@pytest.mark.parametrize(("index", "size", "path"), PATHS)
def test_audit_paths_are_the_reference_ones_and_lead_to_the_root(
    index: int, size: int, path: list[str]
) -> None:
    computed = audit_path(index, HASHES[:size])
    assert [p.hex() for p in computed] == path
    assert root_from_path(index, size, HASHES[index], computed) == bytes.fromhex(ROOTS[size])


def test_every_audit_path_of_every_tree_up_to_40_leaves_checks_and_nothing_else_does() -> None:
    hashes = [leaf_hash(bytes([i, i * 7 % 256])) for i in range(40)]
    compact = CompactRange()
    for size in range(1, len(hashes) + 1):
        compact.append(hashes[size - 1])
        root = tree_head(hashes[:size])
        assert compact.root() == root
        for index in range(size):
            path = audit_path(index, hashes[:size])
            assert root_from_path(index, size, hashes[index], path) == root
            if path:
                wrong = [*path[:-1], bytes(32)]
                assert root_from_path(index, size, hashes[index], wrong) != root
                assert root_from_path(index, size, hashes[index], path[:-1]) != root
            assert root_from_path(index, size, hashes[index], [*path, bytes(32)]) != root


def test_a_leaf_outside_the_tree_has_no_path() -> None:
    with pytest.raises(ValueError, match="not in a tree of 3"):
        audit_path(3, HASHES[:3])
    assert root_from_path(3, 3, HASHES[0], []) is None
    assert root_from_path(-1, 3, HASHES[0], []) is None
