"""Whatever text or JSON an auditor hands the anchor parser, it answers with an anchor or
one AnchorError, never another exception."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civitas.eventkit.anchors import Anchor, AnchorError, parse_digest

GOOD = {
    "service": "cases",
    "tree_size": 1,
    "root": "ab" * 32,
    "last_position": 1,
    "signed_at": "2026-01-01T00:00:00+00:00",
    "key_id": "00" * 8,
    "signature": base64.b64encode(bytes(64)).decode(),
    "version": 1,
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


def parses_or_refuses(text: str | dict[str, object]) -> None:
    try:
        anchor = Anchor.from_json(text) if isinstance(text, dict) else parse_digest(text)
    except AnchorError:
        return
    assert isinstance(anchor.tree_size, int)
    assert len(bytes.fromhex(anchor.root)) == 32


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(GOOD)), json_values)
def test_any_value_of_any_field_is_an_anchor_or_one_anchor_error(name: str, value: object) -> None:
    parses_or_refuses({**GOOD, name: value})
    parses_or_refuses(json.dumps({**GOOD, name: value}))


@settings(max_examples=300, deadline=None)
@given(json_values | st.text(max_size=200))
def test_any_text_is_a_digest_or_one_anchor_error(value: object) -> None:
    parses_or_refuses(value if isinstance(value, str) else json.dumps(value))


def test_the_good_anchor_parses_and_deep_nesting_is_refused() -> None:
    assert Anchor.from_json(GOOD).tree_size == 1
    with pytest.raises(AnchorError, match="not JSON"):
        Anchor.from_json("[" * 100_000)
