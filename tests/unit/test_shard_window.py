"""The DStream window and the holder's fair queue (no sockets)."""

from __future__ import annotations

import asyncio

from borgusb.dstream import FairGate, frame, unframe
from borgusb.shard.window import MAX_WINDOW, FairQueue, Window


def drain(win: Window, fail: dict | None = None) -> list[tuple[int, str]]:
    log = []
    fail = fail or {}
    while not win.finished:
        reqs = win.next()
        assert reqs or win.inflight, f"stuck: {win.stuck()}"
        for i, h in reqs:
            log.append((i, h))
            outcome = fail.get((i, h), fail.get(h, "ok"))
            if outcome == "ok":
                win.ok(i)
            elif outcome == "bad":
                win.bad(i, h)
            else:
                win.unreachable(i, h)
    return log


def test_window_bounds_and_spreads_load() -> None:
    win = Window([["a", "b", "c"]] * 30, window=6, per_holder=2)
    first = win.next()
    assert len(first) == 6
    assert {h for _, h in first} == {"a", "b", "c"}
    assert all(sum(1 for _, h in first if h == x) == 2 for x in "abc")
    assert win.next() == []  # window full
    win.ok(first[0][0])
    assert len(win.next()) == 1


def test_out_of_order_completion_and_resume() -> None:
    win = Window([["a"]] * 10, done={0, 3, 7}, window=4)
    asked = {i for i, _ in drain(win)}
    assert asked == set(range(10)) - {0, 3, 7}
    assert win.finished


def test_bad_bytes_go_to_another_holder_and_dead_holder_is_dropped() -> None:
    win = Window([["a", "b", "c"], ["a", "b"], ["b", "a"]], window=3)
    log = drain(win, {(0, "a"): "bad", "b": "dead"})
    assert win.finished
    assert (0, "a") in log
    # once b is dead nothing more goes to it
    b_at = [n for n, (_, h) in enumerate(log) if h == "b"]
    assert len(b_at) >= 1
    assert all(h != "b" for _, h in log[b_at[-1] + 1 :])
    assert win.retries >= 2


def test_stuck_when_no_holder_left() -> None:
    win = Window([["a"], ["b"]], window=2)
    for i, h in win.next():
        win.unreachable(i, h) if h == "a" else win.ok(i)
    assert not win.finished and win.next() == [] and win.stuck() == [0]


def test_every_holder_gets_its_own_full_window_of_different_shards() -> None:
    win = Window([["a", "b", "c"]] * 40, per_holder=4)
    first = win.next()
    assert win.window == 12 and len(first) == 12
    assert {h: sum(1 for _, x in first if x == h) for h in "abc"} == {"a": 4, "b": 4, "c": 4}
    assert len({i for i, _ in first}) == 12  # no shard asked twice
    big = Window([[f"h{k}" for k in range(20)]] * 200, per_holder=8)
    assert big.window == MAX_WINDOW and len(big.next()) == MAX_WINDOW  # bounded in all


def test_no_holder_takes_more_than_its_fair_share_of_what_is_left() -> None:
    """The last shards must not queue up behind one holder while the others stand idle."""
    win = Window([["a", "b", "c"]] * 29, per_holder=16)
    first = win.next()
    assert sorted(sum(1 for _, h in first if h == x) for x in "abc") == [9, 10, 10]
    for i, h in first:
        if h == "a":
            win.ok(i, h)
    assert win.next() == []  # nothing fresh is left to give a


def test_a_shard_only_one_holder_has_is_asked_for_at_once() -> None:
    """The fair share is for shards another holder could give: a holder's own shards (R = 1, or
    the others dead) held back would leave its pipe empty until its first answers were checked."""
    holders = [["a"]] * 17 + [["b"]] * 12
    win = Window(holders, per_holder=16)
    first = win.next()
    assert {h: sum(1 for _, x in first if x == h) for h in "ab"} == {"a": 16, "b": 12}
    shared = Window([["a", "b"]] * 29, per_holder=16).next()
    assert sorted(sum(1 for _, h in shared if h == x) for x in "ab") == [14, 15]  # the share still holds
    orphaned = Window([["a", "b"]] * 29, per_holder=16)
    orphaned.dead.add("b")  # the other holder gone: every shard is a's alone
    assert len(orphaned.next()) == 16


def test_a_holder_that_serves_bad_bytes_is_avoided_for_the_rest_of_the_read() -> None:
    win = Window([["a", "b"]] * 10, per_holder=2)
    rounds: list[list[tuple[int, str]]] = []
    while not win.finished:
        rounds.append(win.next())
        for n, (i, h) in enumerate(rounds[-1]):
            if len(rounds) == 1 and h == "a" and n < 2:
                win.bad(i, h, avoid=True)  # its first shard is not what the manifest says
            else:
                win.ok(i, h)
    assert "a" in {h for _, h in rounds[0]}
    assert all(h == "b" for r in rounds[1:] for _, h in r)  # nothing more asked of it
    assert win.avoided == {"a"} and win.retries == 1


def test_a_refused_shard_goes_elsewhere_but_the_holder_is_kept() -> None:
    win = Window([["a", "b"]] * 4, per_holder=1)
    reqs = win.next()
    i_a = next(i for i, h in reqs if h == "a")
    win.bad(i_a, "a")  # not held there: only that shard moves
    assert win.avoided == set() and "a" not in win._candidates(i_a) and "a" in win._candidates(3)


def test_a_late_shard_is_asked_again_of_an_idle_holder_and_the_first_copy_wins() -> None:
    win = Window([["slow", "fast"]] * 4, per_holder=2, late_ms=100)
    reqs = win.next(now_ms=0)
    slow = [i for i, h in reqs if h == "slow"]
    for i, h in reqs:
        if h == "fast":
            win.ok(i, h, now_ms=10)
    assert win.next(now_ms=50) == []  # the slow holder's shards are not late yet
    hedged = win.next(now_ms=200)
    assert sorted(hedged) == sorted((i, "fast") for i in slow) and win.hedged == 2
    assert win.next(now_ms=400) == []  # at most MAX_ASKED holders per shard, and fast is full
    for i in slow:
        win.ok(i, "fast", now_ms=210)
    assert win.finished and win.load["slow"] == 2  # the slow requests still count until they end
    win.ok(slow[0], "slow", now_ms=5000)  # a late copy of a shard already done changes nothing
    win.unreachable(slow[1], "slow")
    assert win.finished and win.retries == 0 and win.requests == 0 and not win.inflight


def test_a_dead_holders_shards_move_to_the_others() -> None:
    win = Window([["a", "b", "c"]] * 9, per_holder=3)
    log = drain(win, {"b": "dead"})
    assert win.finished and win.dead == {"b"}
    moved = {i for i, h in log if h == "b"}
    assert moved and all(any(j == i and h != "b" for j, h in log) for i in moved)


def test_fair_queue_round_robin() -> None:
    q: FairQueue[str] = FairQueue()
    for i in range(5):
        q.push("big", f"big{i}")
    q.push("small", "small0")
    q.push("small", "small1")
    order = [q.pop() for _ in range(7)]
    assert order[:4] == ["big0", "small0", "big1", "small1"]
    assert q.pop() is None


async def test_fair_gate_shares_slots_between_streams() -> None:
    gate = FairGate(slots=1)
    served: list[str] = []

    async def reader(stream: str, n: int) -> None:
        for _ in range(n):
            await gate.acquire(stream)
            served.append(stream)
            await asyncio.sleep(0)
            gate.release()

    await asyncio.gather(reader("wide", 20), reader("wide", 20), reader("narrow", 5))
    first_narrow_done = max(i for i, s in enumerate(served) if s == "narrow")
    assert first_narrow_done < 15, served  # the narrow stream is not starved behind 40 wide requests


def test_frames() -> None:
    wire, data = unframe(frame(b'{"a":1}', b"\n\x00bytes"))
    assert wire == b'{"a":1}' and bytes(data) == b"\n\x00bytes"
