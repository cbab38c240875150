"""borgusb.memory without I/O: signed records, tombstones, queries, the holder's rules, scoring, the store."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from borgusb.cells.memory.store import MemoryStore
from borgusb.keys import SigningKey
from borgusb.memory import errors, scoring
from borgusb.memory.holder import Holding, Limits
from borgusb.memory.query import Result, check_query, check_results, make_query, merge, score_mine
from borgusb.memory.record import (
    MAX_TEXT_BYTES,
    check_record,
    check_tombstone,
    compose,
    make_tombstone,
    open_text,
)

NOW = 1_764_000_000_000
DAY = 86_400_000
A, B = SigningKey(b"\x01" * 32), SigningKey(b"\x02" * 32)


def note(text: str = "Left the spare key under the blue flowerpot.", key: SigningKey = A, **kw):
    return compose(key, text, ts=kw.pop("ts", NOW), **kw)


def test_a_memory_is_signed_by_its_owner_and_its_id_is_the_signed_bytes_hash() -> None:
    m = note(kind="home", place="back door", weights={"importance": 700})
    again = check_record(m.to_dict())
    assert again == m and len(m.id) == 64
    assert note().id != note(ts=NOW + 1).id  # any change is another id


@pytest.mark.parametrize(
    "field, value",
    [
        ("text", "Left the key with a stranger."),
        ("ts", NOW + 1),
        ("kind", "work"),
        ("place", "x"),
        ("weights", {"w": 1}),
    ],
)
def test_a_tampered_memory_is_refused(field: str, value: object) -> None:
    with pytest.raises(errors.BadSignature):
        check_record(dict(note().to_dict(), **{field: value}))


def test_a_forged_owner_is_refused() -> None:
    forged = dict(note(key=B).to_dict(), owner=A.public_key_hex)  # b's words under a's name
    with pytest.raises(errors.BadSignature):
        check_record(forged)


@pytest.mark.parametrize(
    "change, error",
    [
        ({"v": 2}, errors.Malformed),
        ({"kind": "Not A Kind"}, errors.Malformed),
        ({"place": "p" * 129}, errors.Malformed),
        ({"weights": {f"w{i}": 1 for i in range(9)}}, errors.Malformed),
        ({"weights": {"w": 1001}}, errors.Malformed),
        ({"weights": {"w": True}}, errors.Malformed),
        ({"ts": -1}, errors.Malformed),
        ({"text": ""}, errors.Malformed),
        ({"sealed": "00"}, errors.Malformed),  # public with something sealed
        ({"text": "x" * (MAX_TEXT_BYTES + 1)}, errors.TooLarge),
        ({"extra": 1}, errors.Malformed),
    ],
)
def test_bounds_and_shapes(change: dict, error: type) -> None:
    with pytest.raises(error):
        check_record(dict(note().to_dict(), **change))
    with pytest.raises(errors.TooLarge):
        note("é" * (MAX_TEXT_BYTES // 2 + 1))


def test_a_private_memory_opens_for_its_owner_only() -> None:
    m = note("The safe's code is in the cookbook.", private=True)
    assert m.text == "" and m.sealed and "cookbook" not in m.to_dict()["sealed"]
    assert open_text(A, m) == "The safe's code is in the cookbook."
    with pytest.raises(errors.NotYours):
        open_text(B, m)
    # the sealed text lifted into b's own signed record does not open: it is bound to a's key and time
    lifted = compose(B, "x", ts=NOW, private=True)
    body = dict(lifted.to_dict(), sealed=m.sealed)
    from borgusb.memory.record import DOMAIN
    from borgusb.signed import signing_bytes

    body["sig"] = B.sign(signing_bytes(body, DOMAIN)).hex()
    with pytest.raises(errors.Undecryptable):
        open_text(B, check_record(body))


def test_tombstones() -> None:
    m = note()
    t = make_tombstone(A, m.id, NOW)
    assert check_tombstone(t.to_dict()) == t
    with pytest.raises(errors.BadSignature):
        check_tombstone(dict(t.to_dict(), owner=B.public_key_hex))
    with pytest.raises(errors.Malformed):
        check_tombstone(dict(t.to_dict(), id="zz"))


def test_the_holder_keeps_once_drops_for_the_owner_only_and_refuses_a_replay() -> None:
    h = Holding(Limits(max_records=2, max_tombstones=2))
    m = note()
    assert h.keep(m) == "stored" and h.keep(m) == "duplicate"
    with pytest.raises(errors.Malformed):
        h.drop(make_tombstone(B, m.id, NOW))
    assert h.drop(make_tombstone(A, m.id, NOW)) == "removed"
    assert m.id not in h.records and m.id not in h.index
    with pytest.raises(errors.Deleted):
        h.keep(m)
    other = note(key=B, ts=NOW + 5)
    assert h.drop(make_tombstone(A, other.id, NOW)) == "noted"  # a's tombstone does not bind b's memory
    assert h.keep(other) == "stored"
    h.keep(note(ts=NOW + 9))
    with pytest.raises(errors.HolderFull):
        h.keep(note(ts=NOW + 10))
    for i in range(3):
        h.drop(make_tombstone(A, f"{i:064x}", NOW))
    assert len(h.tombstones) == 2
    with pytest.raises(errors.Malformed):
        h.get(["0" * 64] * 65)


def test_queries_are_checked_and_a_private_one_is_signed_by_its_owner_and_fresh() -> None:
    q = make_query("where is the key?", NOW, kinds=("home",), limit=5)
    assert check_query(q.to_dict(), NOW) == q
    mine = make_query("where is the key?", NOW, key=A)
    assert mine.scope == "mine" and mine.owner == A.public_key_hex
    assert check_query(mine.to_dict(), NOW + 59_000) == mine
    with pytest.raises(errors.Stale):
        check_query(mine.to_dict(), NOW + 61_000)
    with pytest.raises(errors.BadSignature):  # b's signed query with a's name on it
        check_query(dict(make_query("k", NOW, key=B).to_dict(), owner=A.public_key_hex), NOW)
    with pytest.raises(errors.BadSignature):
        check_query(dict(mine.to_dict(), sig=""), NOW)
    for change in ({"limit": 0}, {"limit": 51}, {"text": " "}, {"mode": "magic"}, {"kinds": ["A"]}, {"min_score": -1}):
        with pytest.raises(errors.Malformed):
            check_query(dict(q.to_dict(), **change), NOW)
    with pytest.raises(errors.TooLarge):
        check_query(dict(q.to_dict(), text="x" * 1025), NOW)


def test_the_reader_drops_forged_and_unasked_results_and_merges_by_id() -> None:
    q = make_query("key", NOW, kinds=("home",))
    good = note(kind="home")
    other_kind = note(kind="work")
    forged = dict(good.to_dict(), text="forged words")
    docs = [
        Result(good, 500, {"emb": 1}).to_dict(),
        Result(other_kind, 900, {}).to_dict(),
        {"m": forged, "score": 999, "parts": {}},
        {"m": good.to_dict(), "score": 2_000_000, "parts": {}},
        "junk",
    ]
    bad: list[str] = []
    found = check_results(q, docs, bad)
    assert [r.memory.id for r in found] == [good.id] and sorted(bad) == [
        "bad_signature",
        "malformed",
        "malformed",
        "malformed",
    ]
    second = note("another", kind="home")
    merged = merge(q, [[Result(good, 500, {}), Result(second, 100, {})], [Result(good, 700, {})]])
    assert [(r.memory.id, r.score) for r in merged] == [(good.id, 700), (second.id, 100)]
    assert merge(make_query("key", NOW, limit=1), [merged]) == merged[:1]
    private = note("secret", private=True, kind="home")
    assert not check_results(q, [Result(private, 1, {}).to_dict()], bad)  # not asked for in a public search


def test_scoring_parts_and_modes() -> None:
    index = scoring.Index()
    texts = {
        "a": ("Left the extra house key under the blue flowerpot by the back door.", NOW - 2 * DAY),
        "b": ("Changed the engine oil and the filter at 84,200 km.", NOW - 40 * DAY),
        "c": ("Luna the cat gets her vaccination booster in March.", NOW - DAY),
        "d": ("Luna the cat gets her vaccination booster in March.", NOW - 90 * DAY),
    }
    for mid, (text, ts) in texts.items():
        index.add(mid, text, ts)
    top = index.search("Where did I hide the spare key to my home?", NOW, limit=2)
    assert top[0].id == "a" and all(isinstance(s.score, int) for s in top)
    assert [s.id for s in index.search("engine oil filter", NOW, limit=1, mode="keyword")] == ["b"]
    assert index.search("quantum chromodynamics", NOW, limit=4, mode="keyword") == []  # no word in common: nothing
    newer, older = (next(s for s in index.search("cat vaccination", NOW, limit=4) if s.id == i) for i in "cd")
    assert newer.recency > older.recency and newer.score > older.score and newer.keyword == older.keyword
    s = top[0]
    expected = scoring.W_EMBEDDING * s.embedding + scoring.W_KEYWORD * s.keyword + scoring.W_RECENCY * s.recency
    assert abs(s.score - expected) <= 2
    assert index.search("key", NOW, limit=4, min_score=scoring.SCALE) == []
    assert [x.id for x in index.search("key", NOW, limit=4, accept=lambda mid: mid == "b")] == ["b"]
    index.remove("a")
    assert "a" not in {x.id for x in index.search("house key flowerpot", NOW, limit=4)}


def test_the_owner_scores_private_memories_on_their_side() -> None:
    secret = note("Parked the bike behind the library, rack 3.", private=True)
    theirs = note("Parked the bike behind the library, rack 3.", key=B, private=True)
    q = make_query("where did I leave my bicycle?", NOW, key=A)
    found = score_mine(q, A, [secret, theirs, note("unrelated public note")], NOW)
    assert [r.memory.id for r in found] == [secret.id] and found[0].score > 0


def test_the_store_survives_a_restart_and_skips_damaged_lines(tmp_path: Path) -> None:
    counters: Counter[str] = Counter()
    path = tmp_path / "memories.log"
    store = MemoryStore(path, Limits(), counters)
    kept, gone = note(), note("to remove", ts=NOW + 1)
    for m in (kept, gone):
        store.holding.keep(m)
        store.add(m)
    t = make_tombstone(A, gone.id, NOW)
    store.holding.drop(t)
    store.rewrite()
    with path.open("ab") as f:
        f.write(b'{"m": "damaged"}\n')
        f.write(b"not json\n")
    again = MemoryStore(path, Limits(), counters)
    assert set(again.holding.records) == {kept.id} and gone.id in again.holding.tombstones
    assert counters["memory_store_bad_line"] == 2
    with pytest.raises(errors.Deleted):
        again.holding.keep(gone)


async def test_a_cell_without_the_ai_extra_holds_but_refuses_to_search(tmp_path: Path, monkeypatch) -> None:
    from borgusb import cells
    from borgusb.cells.kit import RequestError
    from borgusb.cells.memory.settings import MemorySettings

    spec = cells.spec("peerMemoryCell")
    cell = spec.runtime_class()(
        spec.dna_row(), "127.0.0.1", key=A, settings=MemorySettings.from_sources({}, {}), data_dir=tmp_path
    )
    m = note()
    assert (await cell._keep_local(m))["status"] == "stored"  # a lone cell holds every memory
    monkeypatch.setattr(scoring, "available", lambda: False)
    with pytest.raises(RequestError) as err:
        await cell._find_local(make_query("key", NOW))
    assert err.value.reason == "no_search" and cell.counters["memory_refused:no_search"] == 1
    assert (await cell._fetch_local([m.id]))["records"] == [m.to_dict()]
    assert cell.status()["memory"]["search"] is False


def test_after_a_member_change_one_live_holder_passes_each_copy_on_to_the_new_holders() -> None:
    from borgusb.memory.holder import handoffs, holders_of

    nodes = [SigningKey(bytes([i + 1]) * 32).public_key_hex for i in range(6)]
    ids = [f"{i:064x}" for i in range(200)]
    r = 3
    victim = nodes[2]
    after = [n for n in nodes if n != victim]
    sent: dict[str, set[str]] = {}
    for me in after:  # what every surviving cell holding a copy plans
        mine = [i for i in ids if me in holders_of(i, nodes, r)]
        for mid, to in handoffs(me, mine, nodes, after, r):
            assert to != me and to not in holders_of(mid, nodes, r)
            assert mid not in sent or to not in sent[mid], "a copy is sent once, not by every holder"
            sent.setdefault(mid, set()).add(to)
    for mid in ids:  # every memory is again on its r holders of the new table
        had = {n for n in holders_of(mid, nodes, r) if n != victim}
        assert had | sent.get(mid, set()) == set(holders_of(mid, after, r))
    assert handoffs(nodes[0], ids, nodes, nodes, r) == []  # no change, nothing to send
    # a lone cell (its first view) that kept memories on disk places them for the whole table
    assert {to for _, to in handoffs(nodes[0], ids[:5], [nodes[0]], nodes, r)} <= set(nodes[1:])


def test_a_build_computed_elsewhere_while_memories_come_and_go() -> None:
    index = scoring.Index()
    index.add("a", "Left the extra house key under the blue flowerpot.", NOW)
    index.add("b", "The boiler loses pressure in winter.", NOW)
    plan = index.snapshot()
    assert plan is not None and index.snapshot() is None  # taken: up to date until the next change
    index.remove("a")  # while the plan is computed (a thread in the cell)
    index.add("c", "Spare house key is with the neighbour.", NOW)
    index.install(scoring.compute(plan))
    found = {s.id for s in index.search("house key", NOW, limit=3)}
    assert "a" not in found and "c" in found  # removed skipped; the search builds again for c
