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
from civitas.eventkit.anchors import Anchor, append_anchor, leaf_bytes
from civitas.eventkit.hashing import GENESIS, chain
from civitas.eventkit.merkle import leaf_hash
from civitas.eventkit.proofs import event_digest

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


def forge_unsigned(var: Path, anchor: dict[str, object] | None) -> None:
    """An event that never happened as the only leaf of a one-leaf tree, with the proof's
    anchor made to match it and its signature dropped (or no anchor at all)."""
    proof = json.loads((var / "proof.json").read_text())
    event = {**proof["event"], "actor": "mallory", "data": '{"b":1000000}'}
    stream_hash = chain(GENESIS, event_digest(event))
    leaf = leaf_bytes(event["position"], event["stream_id"], event["stream_version"], stream_hash)
    root = leaf_hash(leaf).hex()
    forged = {
        **proof,
        "event": event,
        "previous_hash": GENESIS.hex(),
        "hash": stream_hash.hex(),
        "leaf_index": 0,
        "tree_size": 1,
        "audit_path": [],
        "root": root,
        "anchor": None if anchor is None else {**proof["anchor"], **anchor, "root": root},
    }
    (var / "proof.json").write_text(json.dumps(forged))


@pytest.mark.parametrize("signature", ["empty", "absent"])
def test_a_proof_whose_own_anchor_is_unsigned_fails_with_or_without_a_key(
    world: Path, capsys: pytest.CaptureFixture[str], signature: str
) -> None:
    public_key = civitas(
        capsys, "audit", "anchor", "--public-key", "--service", "cases", "--var", str(world)
    )[1].split()[-1]
    forge_unsigned(world, {"tree_size": 1, "signature": ""})
    if signature == "absent":
        proof = json.loads((world / "proof.json").read_text())
        del proof["anchor"]["signature"]
        (world / "proof.json").write_text(json.dumps(proof))

    results = [check(capsys, world, "--public-key", public_key), check(capsys, world)]

    assert [code for code, _, _ in results] == [1, 1]
    assert all("is not signed" in err for _, _, err in results)


def test_only_the_text_form_of_a_digest_may_be_unsigned(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forge_unsigned(world, None)
    proof = json.loads((world / "proof.json").read_text())
    unsigned_json = json.dumps(
        {
            "service": "cases",
            "tree_size": 1,
            "root": proof["root"],
            "last_position": 0,
            "signed_at": "",
            "key_id": "",
            "signature": "",
        }
    )

    as_json = check(capsys, world, "--digest", unsigned_json)
    as_text = check(capsys, world, "--digest", f"cases 1 {proof['root']}")

    assert as_json[0] == 1
    assert "is not signed" in as_json[2]
    assert as_text[0] == 0  # the user vouches for where the text was published


def cut_last_event(var: Path) -> None:
    import sqlite3

    with sqlite3.connect(var / "cases" / "events.db") as conn:
        conn.execute("DELETE FROM events WHERE position = (SELECT max(position) FROM events)")


@pytest.mark.parametrize(
    ("rewrite", "services", "said"),
    [
        ("unsigned", ["cases"], "is not signed"),
        ("no signature field", ["cases"], "is not signed"),
        ("emptied", ["cases"], "cases: 0 anchors to check against"),
        ("emptied", [], "no anchors to check against"),
        ("another service", ["cases"], "anchors of funds, which was not asked for"),
        ("unknown service", [], "'evil' keeps no events"),
    ],
)
def test_verify_anchor_fails_a_cut_store_whatever_is_done_to_the_anchors_file(
    world: Path,
    capsys: pytest.CaptureFixture[str],
    rewrite: str,
    services: list[str],
    said: str,
) -> None:
    anchors = world / "cases" / "anchors.jsonl"
    cut_last_event(world)
    code, out, _ = civitas(capsys, "audit", "anchor", "--service", "cases", "--var", str(world))
    resigned = json.loads(out)  # the cut store's digest, signed by a key the insider lacks
    line = {**resigned, "signature": ""}
    if rewrite == "no signature field":
        del line["signature"]
    if rewrite in ("another service", "unknown service"):
        line = {**resigned, "service": "funds" if rewrite == "another service" else "evil"}
    anchors.write_text("" if rewrite == "emptied" else json.dumps(line) + "\n")
    by_service = [arg for service in services for arg in ("--service", service)]

    code, out, err = civitas(
        capsys, "audit", "verify", *by_service, "--var", str(world), "--anchor", str(anchors)
    )

    assert code == 1
    assert said in out + err
    assert not (world / "evil").exists()


def verify_cases(
    capsys: pytest.CaptureFixture[str], var: Path, anchor: str, *extra: str
) -> tuple[int, str, str]:
    return civitas(
        capsys,
        "audit",
        "verify",
        "--service",
        "cases",
        "--var",
        str(var),
        "--anchor",
        anchor,
        *extra,
    )


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"tree_size": "1"}, "tree_size must be a whole number"),
        ({"tree_size": True}, "tree_size must be a whole number"),
        ({"last_position": -1}, "last_position must be a whole number"),
        ({"signature": 5}, "signature must be a string"),
        ({"signature": "AA=="}, "signature must be 64 bytes"),
        ({"signature": "not base64!"}, "signature must be 64 bytes"),
        ({"root": "AB" * 32}, "root must be 64 lowercase hex digits"),
        ({"root": 7}, "root must be a string"),
        ({"service": ["cases"]}, "service must be a string"),
        ({"extra": 1}, "unknown ['extra']"),
        ({"version": 2}, "not a version 1 anchor"),
    ],
)
def test_an_odd_anchor_is_refused_with_one_message(
    world: Path, capsys: pytest.CaptureFixture[str], given: dict[str, object], said: str
) -> None:
    anchor = json.loads((world / "cases" / "anchors.jsonl").read_text())
    code, _, err = verify_cases(capsys, world, json.dumps({**anchor, **given}))

    assert code == 1
    assert said in err
    assert "Traceback" not in err


def test_an_unreadable_public_key_file_is_refused_with_one_message(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anchors = str(world / "cases" / "anchors.jsonl")
    (world / "notakey.pem").write_text('{"version":1}\n')
    results = [
        verify_cases(capsys, world, anchors, "--public-key", str(key))
        for key in (world / "notakey.pem", world)
    ]

    assert [code for code, _, _ in results] == [1, 1]
    assert "does not hold a readable PEM public key" in results[0][2]
    assert "does not hold a readable PEM public key" in results[1][2]


@pytest.mark.parametrize(
    "args",
    [
        ("anchor", "--service", "nosuch"),
        ("anchor", "--service", "../evil"),
        ("prove", "case-proof1", "0", "--service", "evil"),
        ("verify", "--service", "evil", "--anchor", f"evil 1 {'00' * 32}"),
        ("verify", "--anchor", f"evil 1 {'00' * 32}"),
        ("verify", "--service", "funds", "--anchor", f"funds 1 {'00' * 32}"),
    ],
)
def test_an_audit_command_opens_no_store_that_is_not_there(
    world: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    before = sorted(p.relative_to(world) for p in world.rglob("*"))
    code, _, err = civitas(capsys, "audit", *args, "--var", str(world))

    assert code == 1
    assert "keeps no events" in err or "funds has no event store" in err
    assert sorted(p.relative_to(world) for p in world.rglob("*")) == before
