"""The broadcast outbox: when a member's own broadcast is sent again, and when it is given up."""

from __future__ import annotations

import pytest

from borgusb.tree.outbox import BroadcastOutbox


def test_resent_every_retry_period_until_it_comes_back() -> None:
    box = BroadcastOutbox(retry_ms=2000, give_up_ms=20_000)
    box.add("b1", {"n": 1}, 0)
    assert box.due(1999).resend == []
    assert box.due(2000).resend == [("b1", {"n": 1})]
    assert box.due(3999).resend == []  # counted from the last sending, not the first
    assert box.due(4000).resend == [("b1", {"n": 1})]
    box.done("b1")
    assert box.due(10_000) == ([], 0) and len(box) == 0


def test_given_up_after_the_deadline() -> None:
    box = BroadcastOutbox(retry_ms=2000, give_up_ms=5000)
    box.add("b1", {}, 0)
    box.add("b2", {}, 3000)
    due = box.due(5000)
    assert due.given_up == 1 and due.resend == [("b2", {})] and len(box) == 1


def test_bounded_the_oldest_given_up_for_room() -> None:
    box = BroadcastOutbox(retry_ms=1000, give_up_ms=9000, capacity=2)
    assert box.add("b1", {}, 0) == 0
    assert box.add("b2", {}, 1) == 0
    assert box.add("b3", {}, 2) == 1
    assert [bid for bid, _ in box.due(5000).resend] == ["b2", "b3"]


def test_done_for_an_unknown_id_is_harmless() -> None:
    box = BroadcastOutbox(retry_ms=1000, give_up_ms=9000)
    box.done("never-sent")
    assert len(box) == 0


@pytest.mark.parametrize(("retry", "give_up", "capacity"), [(0, 10, 1), (10, 5, 1), (10, 20, 0)])
def test_nonsense_settings_refused(retry: int, give_up: int, capacity: int) -> None:
    with pytest.raises(ValueError, match="outbox"):
        BroadcastOutbox(retry, give_up, capacity)
