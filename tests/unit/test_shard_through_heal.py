"""`through_heal`, the retry every reader of an object uses while the shard cell answers ``healing``
(issue 20): asked again with backoff, any other refusal at once, ``healing`` past the bound as
``healing`` that says to retry (never "not found")."""

from __future__ import annotations

import asyncio
import time

import pytest

from borgusb.cells.shard.client import through_heal
from borgusb.net.peer import PeerRejected


class Answers:
    """A shard cell's answers in order: each a refusal to raise or a reply to return."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.asked: list[float] = []

    async def __call__(self) -> object:
        self.asked.append(time.monotonic())
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, PeerRejected):
            raise answer
        return answer


HEALING = PeerRejected(503, "healing", "the network is healing and not every holder answered: retry")


def test_healing_is_asked_again_with_growing_pauses_until_the_answer() -> None:
    ask = Answers(HEALING, HEALING, {"found": True})
    heard: list[str] = []
    assert asyncio.run(through_heal(ask, 15, lambda exc: heard.append(exc.reason))) == {"found": True}
    assert heard == ["healing", "healing"] and len(ask.asked) == 3
    first, second = ask.asked[1] - ask.asked[0], ask.asked[2] - ask.asked[1]
    assert first >= 0.25 and second >= 0.5  # 0.25 s doubling


def test_any_other_refusal_is_raised_at_once() -> None:
    ask = Answers(PeerRejected(404, "not_found", "no such object"))
    with pytest.raises(PeerRejected) as refused:
        asyncio.run(through_heal(ask, 15))
    assert refused.value.reason == "not_found" and len(ask.asked) == 1


def test_healing_past_the_bound_says_to_retry_and_is_never_not_found() -> None:
    ask = Answers(HEALING)
    start = time.monotonic()
    with pytest.raises(PeerRejected) as refused:
        asyncio.run(through_heal(ask, 1.0))
    assert refused.value.reason == "healing" and refused.value.status == 503
    assert "retry" in refused.value.detail
    assert time.monotonic() - start < 1.0 + 2.5  # a pause that would end past the bound is not slept
    assert len(ask.asked) >= 2
