"""Every receptor, frame and broadcast handler of every implemented cell type, under hostile payloads.

Each example builds a fresh cell in-process (no port bound: the kit's own construction, as the cell
host's warm-up does), makes it the lone root of its tree (so broadcasts are delivered to it), and
sends it one message, or a short sequence, through its own dispatch path: an envelope signed by a
requester and addressed to the cell, through `cell.verifier.verify`, then `Cell._dispatch` (a
receptor request, or a frame with its bytes) or `Cell._dispatch_broadcast` (a broadcast's origin
envelope). Payloads are arbitrary JSON and, per message type, shaped like the real ones with each
field missing, retyped, huge, out of range, badly hex-encoded, or signed by the wrong key.

Properties: a request is answered 2xx with a reply signed by the cell and addressed to the
requester, or refused with a typed ``{"error": word, "detail": text}`` (never 500 ``internal``,
which means a handler crashed) and that refusal counted (``receptor_refused:<reason>``); a
broadcast handler never raises (``broadcast_handler_errors`` stays 0), and no background task a
message started ends in an exception. Handlers that reach the network only reach closed ports on
loopback (127.0.0.93) and are bounded by `DEADLINE_S`; a peer failure is a refusal like any other.
A shard locate waits `LOCATE_WAIT_S` instead of 1.5 s (the lone node answers itself at once). The
cell, its doors and these checks are `incell.Fuzzed`, which atheris_receptors.py drives too.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, reject
from hypothesis import strategies as st

from borgusb import cells, envelope
from borgusb.cells.kit.handlers import collect
from borgusb.clock import ManualClock, SystemClock
from borgusb.keys import SigningKey
from borgusb.shard import model

from .agent_shapes import AGENT_BROADCASTS, AGENT_RECEPTORS
from .btrader_shapes import BT_BROADCASTS, BT_RECEPTORS
from .doge_shapes import DOGE_RECEPTORS
from .fstream_shapes import FSTREAM_BROADCASTS, FSTREAM_RECEPTORS
from .ftree_earn_shapes import FTREE_EARN_RECEPTORS
from .incell import (
    CELL_KEY,
    IP,
    OBJ,
    OWNER,
    REQUESTERS,
    SENDER_IP,
    SHARD,
    SHARD_H,
    STORED_M,
    STORED_REC,
    STRANGER,
    T_SIGNED,
    Fuzzed,
    Unsignable,
    doors,
    request_source,
    send,
)
from .mail_shapes import MAIL_RECEPTORS
from .memory_shapes import MEMORY_RECEPTORS
from .peerpays_shapes import PAY_BROADCASTS, PAY_RECEPTORS
from .strategies import (
    HOSTILE,
    HOSTILE_SMALL,
    JSON_SMALL,
    fuzz_settings,
    hashes,
    hex_texts,
    mostly,
    safe_ints,
    shaped_dict,
    texts,
    weighted,
)

BY_NAME = {"stranger": STRANGER, "owner": OWNER, "cell": CELL_KEY}
KEY_NAMES = st.sampled_from(sorted(BY_NAME))  # a test draws the name, so a failing example shows it
KEYS = KEY_NAMES.map(BY_NAME.__getitem__)
PUBKEYS = st.sampled_from([k.public_key_hex for k in REQUESTERS])

IMPLEMENTED = cells.implemented()


# ------------------------------------------------------------------ field strategies

NET_IPS = st.sampled_from([SENDER_IP, IP, "::1", "", "\x00", "a" * 300, "1.2.3.4.5"])
NET_PORTS = st.sampled_from([1, 9, 0, 65535, 65536, 70_000, -1, 2**31, 2**53 - 1, True])
KNOWN_HASHES = st.sampled_from([SHARD_H, OBJ, model.EMPTY_SHA256])
HASH_LIKE = weighted((2, KNOWN_HASHES), (1, hashes), (1, hex_texts))
OBJ_LIKE = st.one_of(st.none(), st.sampled_from([OBJ, SHARD_H]), hashes, hex_texts)
INT_LIKE = st.one_of(safe_ints, st.sampled_from([True, False, None, "1", "1.0"]))
# valid values, for the fields of a payload that is right but for one or two of them
VALID_IP = st.just(SENDER_IP)
VALID_PORT = st.sampled_from([9, 1])  # closed on SENDER_IP: a peer that cannot be reached
QUERY_IDS = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)
RIGHT = mostly(True, False)
T_LIKE = st.one_of(st.sampled_from([T_SIGNED, T_SIGNED + 1, T_SIGNED - 1, 0, -1, 2**53 - 1]), INT_LIKE)
DOMAINS = ("borgusb.shard", "borgusb.manifest", "borgusb.tomb")


def domain(right: str) -> st.SearchStrategy[str]:
    """The signature's domain: mostly the right one, else another kind's (a signature replayed)."""
    return mostly(right, *(d for d in DOMAINS if d != right))


def _sign_any(key: SigningKey, signed_as: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A valid owner signature over whatever doc holds (a wrong shape, signed)."""
    return model._sign(key, signed_as, doc)


@st.composite
def damaged(draw: st.DrawFn, doc: dict[str, Any]) -> Any:
    """doc, or doc with a member dropped, replaced or added after signing."""
    how = draw(st.sampled_from(["as is"] * 6 + ["drop", "replace", "add", "junk"]))
    doc = dict(doc)
    if how == "drop" and doc:
        doc.pop(draw(st.sampled_from(sorted(doc))))
    elif how == "replace" and doc:
        doc[draw(st.sampled_from(sorted(doc)))] = draw(st.one_of(JSON_SMALL, hex_texts, HASH_LIKE))
    elif how == "add":
        doc[draw(texts)] = draw(JSON_SMALL)
    elif how == "junk":
        return draw(HOSTILE_SMALL)
    return doc


@st.composite
def records(draw: st.DrawFn) -> tuple[Any, bytes]:
    """A shard record and bytes: matching or not, signed by someone or not at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(damaged(STORED_REC)), SHARD
    data = draw(st.one_of(st.binary(max_size=256), st.just(SHARD), st.just(b"")))
    h = model.sha256_hex(data) if draw(RIGHT) else draw(HASH_LIKE)
    n = len(data) if draw(RIGHT) else draw(INT_LIKE)
    rec = _sign_any(draw(KEYS), draw(domain("borgusb.shard")), {"h": h, "n": n, "t": draw(T_LIKE)})
    return draw(damaged(rec)), data


@st.composite
def manifests(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 4)) == 0:
        return draw(damaged(STORED_M))
    size = draw(st.one_of(st.integers(0, 5000), INT_LIKE))
    ss = draw(st.one_of(st.integers(1, 4096), INT_LIKE))
    if isinstance(size, int) and isinstance(ss, int) and ss > 0 and 0 <= size and -(-size // ss) <= 40:
        count = -(-size // ss) + draw(st.sampled_from([0, 0, 0, 1, -1]))
    else:
        count = draw(st.integers(0, 5))
    shards = [draw(HASH_LIKE) for _ in range(max(0, count))]
    sane = isinstance(size, int) and isinstance(ss, int) and ss > 0 and 0 <= size and -(-size // ss) == len(shards)
    right = model.object_id(size, ss, shards) if sane else None  # the id this shard list really has
    oid = right if right is not None and draw(st.booleans()) else draw(HASH_LIKE)
    m = {"id": oid, "size": size, "ss": ss, "r": draw(st.one_of(st.integers(1, 16), INT_LIKE)), "shards": shards}
    m["v"] = draw(st.sampled_from([2, 2, 2, 1, "2", True]))
    m["t"] = draw(T_LIKE)
    if draw(st.integers(0, 9)) == 0:
        m["shards"] = [SHARD_H] * 12_001  # past MAX_SHARDS
    return draw(damaged(_sign_any(draw(KEYS), draw(domain("borgusb.manifest")), m)))


@st.composite
def tombs(draw: st.DrawFn) -> Any:
    tomb = _sign_any(draw(KEYS), draw(domain("borgusb.tomb")), {"id": draw(HASH_LIKE), "t": draw(T_LIKE)})
    return draw(damaged(tomb))


HOLDERS = st.one_of(
    st.tuples(PUBKEYS | hex_texts, NET_IPS, NET_PORTS).map(list),
    st.lists(JSON_SMALL, max_size=4),
    JSON_SMALL,
)
STATEMENT = "svc.entry"
SVC_PORT = cells.dna_of("serviceMgrCell").recp_port if "serviceMgrCell" in IMPLEMENTED else 0
CELL_NAMES = st.sampled_from(["peerTreeNet", "shardTreeCell", "x", "", "a" * 65, "9lives", "cell name"])
IPS = st.one_of(st.sampled_from([IP, SENDER_IP, "10.0.0.1", "::1", "fe80::1%eth0", "", "1.2.3"]), texts)
STATEMENT_TO = mostly(
    envelope.everyone(SVC_PORT),
    envelope.address(CELL_KEY.public_key_hex, SVC_PORT),
    envelope.address(STRANGER.public_key_hex, SVC_PORT),
    envelope.everyone(1),
    "",
)
VALID_STATEMENT = st.fixed_dictionaries(
    {
        "cell": st.sampled_from(["peerTreeNet", "shardTreeCell"]),
        "ip": st.just(IP),
        "ports": st.just([13360, 13361, 13362]),
        "status": st.sampled_from(["online", "root"]),
        "load": st.just({"sent": 3, "load1_x100": 12}),
    }
)


@st.composite
def statements(draw: st.DrawFn) -> Any:
    """A cell's signed statement about itself (svc.entry), right or wrong in any part."""
    payload = draw(
        weighted(
            (2, VALID_STATEMENT),
            (
                1,
                shaped_dict(
                    {
                        "cell": CELL_NAMES,
                        "ip": IPS,
                        "ports": st.lists(st.one_of(NET_PORTS, safe_ints), max_size=4),
                        "status": st.sampled_from(["online", "root", "", "s" * 17]),
                        "load": st.dictionaries(
                            st.sampled_from(["a", "load1", "", "x y", "k" * 33]), JSON_SMALL, max_size=20
                        ),
                        "node": PUBKEYS,
                    }
                ),
            ),
        )
    )
    skew = draw(mostly(0, -20_000, 25_000, -40_000, 40_000))
    mtype = draw(mostly(STATEMENT, "svc.announce", "bcast"))
    doc = envelope.sign(draw(KEYS), mtype, payload, ManualClock(SystemClock().now_ms() + skew), to=draw(STATEMENT_TO))
    return draw(damaged(doc))


def kind(name: str, fields: dict[str, Any]) -> st.SearchStrategy[Any]:
    """The data of a broadcast of one kind (its ``"k"``), or now and then anything at all."""
    shaped = shaped_dict(fields)
    named = shaped.map(lambda d: {**d, "k": name})
    return weighted((3, named), (1, shaped), (1, HOSTILE_SMALL))


@st.composite
def valid_tombs(draw: st.DrawFn) -> dict[str, Any]:
    oid = draw(st.one_of(st.just(OBJ), hashes))
    return model.sign_tomb(draw(KEYS), oid, draw(st.sampled_from([T_SIGNED + 1, T_SIGNED, T_SIGNED - 1])))


VALID_HOLDERS = st.lists(st.tuples(PUBKEYS, VALID_IP, VALID_PORT).map(list), min_size=1, max_size=3)
MANIFEST = (st.just(STORED_M), manifests())
TOMB = (valid_tombs(), tombs())
STATEMENTS = st.lists(statements(), max_size=4)

BROADCASTS: dict[str, st.SearchStrategy[Any]] = {
    "hi": kind("hi", {"ip": (VALID_IP, NET_IPS), "port": (VALID_PORT, NET_PORTS)}),
    "find": kind(
        "find",
        {
            "q": (QUERY_IDS, st.one_of(texts, JSON_SMALL)),
            "id": (st.just(OBJ), HASH_LIKE),
            "ip": (VALID_IP, NET_IPS),
            "port": (VALID_PORT, NET_PORTS),
        },
    ),
    "del": kind("del", {"tomb": TOMB, "m": (st.one_of(st.none(), st.just(STORED_M)), manifests())}),
    "table": kind(
        "table",
        {
            "origin": PUBKEYS,
            "ip": (st.just(IP), IPS),
            "entries": (
                STATEMENTS,
                st.one_of(
                    st.lists(st.one_of(statements(), JSON_SMALL), max_size=4),
                    statements().map(lambda s: [s] * 65),  # one past max_per_origin
                ),
            ),
        },
    ),
}


def tree_broadcasts(kinds: list[str]) -> st.SearchStrategy[Any]:
    """A requester's tree.broadcast: its payload is broadcast as it is, dispatched by its "k"."""
    return weighted(*((3, BROADCASTS[k]) for k in kinds if k in BROADCASTS), (1, HOSTILE))


OBJECT_ID = (st.just(OBJ), HASH_LIKE)
REPAIR = (st.booleans(), JSON_SMALL)
RECEPTORS: dict[str, st.SearchStrategy[Any]] = {
    "shard.manifest": shaped_dict({"m": MANIFEST}),
    "shard.keep": shaped_dict({"m": MANIFEST}),
    "shard.locate": shaped_dict({"id": OBJECT_ID, "repair": REPAIR}),
    "shard.stat": shaped_dict({"id": OBJECT_ID, "repair": REPAIR}),
    "shard.holds": shaped_dict({"id": OBJECT_ID}),
    "shard.owned": shaped_dict({"o": (PUBKEYS, texts)}),
    "shard.delete": shaped_dict({"tomb": TOMB}),
    "shard.have": shaped_dict(
        {
            "q": (QUERY_IDS, st.one_of(texts, JSON_SMALL)),
            "id": OBJECT_ID,
            "m": MANIFEST,
            "h": (st.lists(KNOWN_HASHES, max_size=3), st.one_of(st.lists(HASH_LIKE, max_size=4), JSON_SMALL)),
        }
    ),
    "shard.fetch": shaped_dict(
        {
            "h": (st.one_of(st.just(SHARD_H), hashes), HASH_LIKE),
            "obj": (st.one_of(st.none(), st.just(OBJ)), OBJ_LIKE),
            "from": (VALID_HOLDERS, st.lists(HOLDERS, max_size=3) | JSON_SMALL),
            "m": (st.one_of(st.none(), st.just(STORED_M)), manifests()),
        }
    ),
    "svc.announce": shaped_dict({"entry": statements()}),
    "svc.withdraw": shaped_dict({"cell": (st.just("peerTreeNet"), CELL_NAMES), "ip": (st.just(IP), IPS)}),
    "svc.list": shaped_dict({"cell": (st.just("peerTreeNet"), CELL_NAMES)}),
}
RECEPTORS.update(PAY_RECEPTORS)
RECEPTORS.update(BT_RECEPTORS)
RECEPTORS.update(DOGE_RECEPTORS)
RECEPTORS.update(MAIL_RECEPTORS)
RECEPTORS.update(MEMORY_RECEPTORS)
RECEPTORS.update(FTREE_EARN_RECEPTORS)
RECEPTORS.update(AGENT_RECEPTORS)
RECEPTORS.update(FSTREAM_RECEPTORS)
BROADCASTS.update(BT_BROADCASTS)
BROADCASTS.update(AGENT_BROADCASTS)
BROADCASTS.update(FSTREAM_BROADCASTS)
BROADCASTS.update(PAY_BROADCASTS)


@st.composite
def hold_frames(draw: st.DrawFn) -> tuple[Any, bytes]:
    rec, data = draw(records())
    return draw(damaged({"rec": rec, "obj": draw(OBJ_LIKE)})), data


@st.composite
def put_frames(draw: st.DrawFn) -> tuple[Any, bytes]:
    rec, data = draw(records())
    return draw(damaged({"rec": rec, "obj": draw(OBJ_LIKE), "r": draw(st.one_of(st.integers(1, 17), INT_LIKE))})), data


GET_PAYLOADS = shaped_dict(
    {
        "h": (st.just(SHARD_H), HASH_LIKE),
        "sid": (QUERY_IDS, st.one_of(texts, JSON_SMALL)),
        "of": (st.integers(1, 100), INT_LIKE),
        "done": (st.integers(0, 100), INT_LIKE),
    }
)
FRAME_BYTES = st.one_of(st.binary(max_size=512), st.just(SHARD))
FRAMES: dict[str, st.SearchStrategy[tuple[Any, bytes]]] = {
    "shard.hold": hold_frames(),
    "shard.put": put_frames(),
    "shard.get": st.tuples(GET_PAYLOADS, FRAME_BYTES),
}
SOURCES = st.sampled_from([IP, IP, SENDER_IP, None])  # the TCP peer a serviceMgr sees


def receptor_payloads(cell_name: str, mtype: str) -> st.SearchStrategy[Any]:
    if mtype == "tree.broadcast":
        return tree_broadcasts(sorted(collect(cells.spec(cell_name).runtime_class()).broadcasts))
    return weighted((3, RECEPTORS[mtype]), (1, HOSTILE)) if mtype in RECEPTORS else HOSTILE


def payloads(cell_name: str, door: str, mtype: str) -> st.SearchStrategy[tuple[Any, bytes]]:
    """A message's payload and its frame bytes (none but for a frame): shaped for its type, or hostile."""
    if door == "frame":
        return FRAMES.get(mtype, st.tuples(HOSTILE, FRAME_BYTES))
    if door == "broadcast":
        return st.tuples(BROADCASTS.get(mtype, HOSTILE), st.just(b""))
    return st.tuples(receptor_payloads(cell_name, mtype), st.just(b""))


# ------------------------------------------------------------------ one message per example


def run_on_fresh_cell(cell_name: str, body: Callable[[Fuzzed], Any], source: str | None = None) -> None:
    """body(fuzzed) on a fresh cell, in a fresh event loop, the cell closed afterwards; an
    unsignable payload is no example."""

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="borgusb-fuzz-") as tmp:
            fuzzed = Fuzzed(cell_name, Path(tmp))
            try:
                with request_source(source):
                    await body(fuzzed)
            finally:
                await fuzzed.close()

    try:
        asyncio.run(main())
    except Unsignable:
        reject()


def _cases() -> list[Any]:
    return [
        pytest.param(name, door, mtype, id=f"{name}-{door}-{mtype}")
        for name in IMPLEMENTED
        for door, mtype in doors(name)
    ]


TO_SELF = st.sampled_from(["self", "self", "self", "everyone"])
ORIGIN_TYPES = st.sampled_from(["bcast", "bcast", "tree.broadcast"])

# inputs that crashed a handler before its fix, replayed first by the test of their message type:
# (cell, door, type) -> [(requester, payload, frame bytes)]
REGRESSIONS: dict[tuple[str, str, str], list[tuple[SigningKey, Any, bytes]]] = {
    # a list as the query id of a have: TypeError (unhashable) in Locator._on_have
    ("shardTreeCell", "receptor", "shard.have"): [(STRANGER, {"q": []}, b"")],
    # a port past 65535 where the node holds the object: OverflowError out of PeerClient.hello
    ("shardTreeCell", "broadcast", "find"): [
        (STRANGER, {"k": "find", "q": "", "id": OBJ, "ip": SENDER_IP, "port": 65536}, b"")
    ],
}


@pytest.mark.parametrize(("cell_name", "door", "mtype"), _cases())
@fuzz_settings(75)
@given(data=st.data())
@example(data=None)  # the REGRESSIONS of this message type
def test_one_hostile_message(cell_name: str, door: str, mtype: str, data: st.DataObject | None) -> None:
    if data is None:
        for case in REGRESSIONS.get((cell_name, door, mtype), []):
            run_on_fresh_cell(
                cell_name, lambda f, case=case: send(f, door, case[0], mtype, case[1], case[2], "self"), IP
            )
        return
    key = BY_NAME[data.draw(KEY_NAMES, label="requester")]
    source = data.draw(SOURCES, label="tcp peer")
    to = data.draw(ORIGIN_TYPES, label="origin type") if door == "broadcast" else None
    payload, raw = data.draw(payloads(cell_name, door, mtype), label="payload")
    to = to or data.draw(TO_SELF, label="to")
    run_on_fresh_cell(cell_name, lambda f: send(f, door, key, mtype, payload, raw, to), source)


def test_every_handler_is_fuzzed_with_shaped_payloads() -> None:
    """A new receptor, frame or broadcast kind gets arbitrary JSON at least; this lists those that
    get nothing shaped like their real payloads, so a strategy is added with the handler."""
    generic = {"cell.status", "tree.members", "tree.broadcast", "crono.time"}  # they read no payload field
    missing = []
    for name in IMPLEMENTED:
        table = collect(cells.spec(name).runtime_class())
        missing += [t for t in table.receptors if t not in RECEPTORS and t not in generic]
        missing += [t for t in table.frames if t not in FRAMES]
        missing += [k for k in table.broadcasts if k not in BROADCASTS]
    assert not missing, f"no shaped fuzz strategy for {sorted(set(missing))} (tests/fuzz/test_receptor_fuzz.py)"


# ------------------------------------------------------------------ sequences: state one message leaves


@st.composite
def messages(draw: st.DrawFn, cell_name: str) -> tuple[str, str, Any, bytes]:
    door, mtype = draw(st.sampled_from(doors(cell_name)))
    payload, raw = draw(payloads(cell_name, door, mtype))
    return door, mtype, payload, raw


SEQUENCE_REGRESSIONS: dict[str, list[list[tuple[SigningKey, str, str, Any, bytes]]]] = {
    "shardTreeCell": [
        [  # a "hi" naming port 70000 put a holder in the directory that made every later put fail (500)
            (STRANGER, "broadcast", "hi", {"k": "hi", "ip": SENDER_IP, "port": 70_000}, b""),
            (OWNER, "frame", "shard.put", {"rec": STORED_REC, "r": 2}, SHARD),
        ],
        [  # a get with its progress (as every DStream receiver sends) left a float in status(): cell.status
            # could not sign it (500) until 64 other streams had pushed that one out
            (STRANGER, "frame", "shard.get", {"h": SHARD_H, "sid": "0" * 16, "of": 1, "done": 0}, b""),
            (STRANGER, "receptor", "cell.status", None, b""),
        ],
        [  # and a hostile "done" made it an integer past 2**53
            (STRANGER, "frame", "shard.get", {"h": SHARD_H, "sid": "0" * 16, "of": 1, "done": -(2**53 - 1)}, b""),
            (STRANGER, "receptor", "cell.status", None, b""),
        ],
    ],
}


@pytest.mark.parametrize("cell_name", IMPLEMENTED)
@fuzz_settings(100)
@given(data=st.data())
@example(data=None)  # the SEQUENCE_REGRESSIONS of this cell type
def test_hostile_sequences(cell_name: str, data: st.DataObject | None) -> None:
    if data is None:
        for seq in SEQUENCE_REGRESSIONS.get(cell_name, []):
            run_on_fresh_cell(cell_name, lambda f, seq=seq: send_all(f, seq), IP)
        return
    drawn = data.draw(st.lists(messages(cell_name), min_size=2, max_size=4), label="messages")
    keys = [BY_NAME[data.draw(KEY_NAMES, label="requester")] for _ in drawn]
    seq = [(key, door, mtype, payload, raw) for key, (door, mtype, payload, raw) in zip(keys, drawn)]
    run_on_fresh_cell(cell_name, lambda f: send_all(f, seq), IP)


async def send_all(fuzzed: Fuzzed, seq: list[tuple[SigningKey, str, str, Any, bytes]]) -> None:
    for key, door, mtype, payload, raw in seq:
        await send(fuzzed, door, key, mtype, payload, raw, "self")
