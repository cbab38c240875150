"""What the fuzz tests share: reproducible settings, fixed keys, and strategies for hostile JSON.

Every key here comes from a fixed secret and every nonce from the strategy, so a failing example
replays byte for byte (ECDSA signatures are deterministic, RFC 6979); `FUZZ` derandomizes
hypothesis and keeps no example database, so CI sees the same inputs as a developer.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from borgusb.canonical import MAX_DEPTH, MAX_SAFE_INT
from borgusb.keys import SigningKey


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
    )


def fixed_key(name: str) -> SigningKey:
    """A key from a fixed secret (reproducible signatures)."""
    return SigningKey(hashlib.sha256(f"borgusb fuzz key {name}".encode()).digest())


# ------------------------------------------------------------------ scalars

safe_ints = st.one_of(
    st.integers(-MAX_SAFE_INT, MAX_SAFE_INT),
    st.sampled_from([0, -1, 1, 255, 256, 65535, 65536, 2**31, -(2**31), 2**32, MAX_SAFE_INT, -MAX_SAFE_INT]),
)
# what JSON can spell but canonical form refuses (only reachable as raw text)
unsafe_ints = st.sampled_from([MAX_SAFE_INT + 1, -MAX_SAFE_INT - 1, 2**63, -(2**63), 10**20, 10**400])
texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["", " ", "\x00", "\n", "\u2028", "\ud7ff", "é", "💥", "*", ":", '"', "\\", "a" * 300]),
)
HEX = "0123456789abcdef"
hex_texts = st.one_of(
    st.text(alphabet=HEX, min_size=0, max_size=80),
    st.text(alphabet=HEX + "ABCDEFxyz \n", min_size=0, max_size=80),
    st.sampled_from(["0" * 63, "0" * 65, "A" * 64, "g" * 64, "0" * 64 + "\n", " " + "0" * 64]),
)
# a 64-hex-digit value that is not the hash of anything
hashes = st.text(alphabet=HEX, min_size=64, max_size=64)


def leaves() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), safe_ints, texts)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any canonical JSON value (what a signer can put in a payload)."""
    return st.recursive(
        leaves(),
        lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(texts, inner, max_size=5)),
        max_leaves=max_leaves,
    )


def nested(depth: int, leaf: Any = 1) -> Any:
    """A value `depth` containers deep, alternating lists and objects."""
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"n": value}
    return value


# big values still inside one envelope (1 MiB): built once, drawn by reference
HUGE = (
    "x" * 300_000,
    "é" * 150_000,
    list(range(20_000)),
    {f"k{i}": i for i in range(5_000)},
    nested(MAX_DEPTH - 8),  # deep, yet still signable a few levels down inside a payload
    [[]] * 10_000,
)
huge_values = st.sampled_from(HUGE)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each as often as its weight (``st.one_of`` draws its branches evenly
    and folds repeated ones into one, so repeating a branch does not weigh it)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(table).flatmap(lambda strategy: strategy)


def hostile(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Arbitrary JSON, one time in eight a huge or deeply nested one (they cost milliseconds each)."""
    return weighted((7, json_values(max_leaves)), (1, huge_values))


# built once: a strategy made inside a draw is validated again at every draw, which is slow
JSON = json_values(12)
JSON_SMALL = json_values(4)
HOSTILE = hostile(12)
HOSTILE_SMALL = hostile(6)


Field = st.SearchStrategy[Any] | tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]
# how one field is drawn; "valid" first, so a failing example shrinks to valid fields but the culprit
_CHOICE = st.sampled_from(["valid"] * 6 + ["edge"] * 2 + ["hostile", "missing"])
_STRAY = st.sampled_from([False] * 9 + [True])


def mostly(valid: Any, *others: Any) -> st.SearchStrategy[Any]:
    """`valid` three times in four, else one of `others`."""
    return st.sampled_from([valid] * 3 * max(1, len(others)) + list(others))


@st.composite
def _shaped(draw: st.DrawFn, fields: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]]) -> Any:
    out = {}
    for name, (valid, edges) in fields.items():
        choice = draw(_CHOICE)
        if choice != "missing":
            out[name] = draw({"valid": valid, "edge": edges, "hostile": HOSTILE_SMALL}[choice])
    if draw(_STRAY):
        out[draw(texts)] = draw(JSON_SMALL)  # a stray member
    return out


def shaped_dict(fields: dict[str, Field]) -> st.SearchStrategy[dict[str, Any]]:
    """An object shaped like a real payload: each field (valid, edges) is valid six times in ten, else
    an edge value (wrong type, out of range, bad hex, huge), anything at all, or missing; now and then
    a stray member. Mostly valid fields with one or two wrong is what reaches a handler's deep paths."""
    pairs = {name: f if isinstance(f, tuple) else (f, f) for name, f in fields.items()}
    return _shaped(pairs)
