"""The DStream window and the holder's fair queue (no sockets)."""

from __future__ import annotations

import asyncio

from borgusb.dstream import FairGate, frame, unframe
from borgusb.shard.window import FairQueue, Window


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
