"""`civitas audit anchor`, `prove` and `check-proof` on a service's own store: a good proof
checks without the store; a changed field, a wrong audit path node, another digest and a
forged signature each fail, saying what failed."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from civitas.audit.anchoring import verify_anchor
from civitas.cli import main
from civitas.eventkit import NewEvent, SqliteEventStore, StreamState
from civitas.eventkit.anchors import Anchor, append_anchor

STREAM = "case-proof1"


async def fill(var: Path) -> None:
    store = SqliteEventStore(var / "cases" / "events.db")
    try:
        for n in range(5):
            events = [NewEvent("CaseNoted", {"note": f"n{n}-{e}"}, actor="u") for e in range(2)]
            await store.append(f"case-c{n}", events, StreamState.NO_STREAM)
        await store.append(STREAM, [NewEvent("CaseFiled", {"a": 1})], StreamState.NO_STREAM)
        await store.append(STREAM, [NewEvent("CaseClassified", {"b": 2})], 0)
    finally:
        await store.close()


def civitas(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([*args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    asyncio.run(fill(tmp_path))
    code, out, _ = civitas(capsys, "audit", "anchor", "--service", "cases", "--var", str(tmp_path))
    assert code == 0
    anchor = Anchor.from_json(out)
    assert anchor.tree_size == 12
    append_anchor(tmp_path / "cases" / "anchors.jsonl", anchor)
    code, out, _ = civitas(capsys, "audit", "prove", STREAM, "1", "--var", str(tmp_path))
    assert code == 0
    (tmp_path / "proof.json").write_text(out)
    return tmp_path


def check(capsys: pytest.CaptureFixture[str], var: Path, *extra: str) -> tuple[int, str, str]:
    return civitas(
        capsys, "audit", "check-proof", str(var / "proof.json"), "--var", str(var), *extra
    )


def edit(var: Path, change: dict[str, object]) -> None:
    proof = json.loads((var / "proof.json").read_text())
    for path, value in change.items():
        *parents, last = path.split(".")
        node = proof
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value
    (var / "proof.json").write_text(json.dumps(proof))


def test_a_proof_checks_against_its_signed_anchor_without_the_store(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = civitas(
        capsys, "audit", "anchor", "--public-key", "--service", "cases", "--var", str(world)
    )
    public_key = out.split()[-1]
    (world / "cases" / "events.db").unlink()  # the checker needs no store

    code, out, err = check(capsys, world, "--public-key", public_key)

    proof = json.loads((world / "proof.json").read_text())
    assert code == 0, err
    assert f"{STREAM} revision 1 is event 11 of cases's log of 12 events" in out
    assert proof["anchor"]["tree_size"] == 12
    assert proof["event"]["data"] == '{"b":2}'
    assert len(proof["audit_path"]) == 3  # leaf 10, leaves 8-9, leaves 0-7


@pytest.mark.parametrize(
    ("change", "failure"),
    [
        ({"event.data": '{"b":3}'}, "fields do not hash to the stream hash"),
        ({"event.actor": "insider"}, "fields do not hash to the stream hash"),
        ({"previous_hash": "00" * 32}, "fields do not hash to the stream hash"),
        ({"audit_path.1": "ab" * 32}, "audit path does not lead"),
        ({"leaf_index": 10}, "audit path does not lead"),
        ({"anchor.root": "cd" * 32}, "forged or damaged signature"),
    ],
)
def test_a_changed_proof_fails_and_says_what_failed(
    world: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object], failure: str
) -> None:
    edit(world, change)
    code, _, err = check(capsys, world)
    assert code == 1
    assert failure in err


def test_a_proof_against_another_digest_or_a_forged_signature_fails(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proof = json.loads((world / "proof.json").read_text())
    anchor = Anchor.from_json(proof["anchor"])
    other = f"cases 12 {'ef' * 32}"
    forged = Anchor(
        **{**json.loads(anchor.to_json()), "signature": base64.b64encode(bytes(64)).decode()}
    )
    smaller = f"cases 11 {proof['root']}"

    assert check(capsys, world, "--digest", f"cases 12 {proof['root']}")[0] == 0
    results = [check(capsys, world, "--digest", d) for d in (other, forged.to_json(), smaller)]
    assert [code for code, _, _ in results] == [1, 1, 1]
    assert "not the digest's (12 events" in results[0][2]
    assert "forged or damaged signature" in results[1][2]
    assert "not the digest's (11 events" in results[2][2]


def test_verify_anchor_says_whether_the_store_extends_the_anchors_file(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anchors = str(world / "cases" / "anchors.jsonl")
    intact = asyncio.run(verify_anchor(["cases"], world, anchors, ""))
    import sqlite3

    with sqlite3.connect(world / "cases" / "events.db") as conn:
        conn.execute("DELETE FROM events WHERE position = (SELECT max(position) FROM events)")
    cut = asyncio.run(verify_anchor(["cases"], world, anchors, ""))
    out = capsys.readouterr().out

    assert (intact, cut) == (0, 1)
    assert "cases: 1 anchors, the last over 12 events: extends them" in out
    assert "covers 12 events, the store holds 11: events were deleted" in out
