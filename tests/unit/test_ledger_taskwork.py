"""The agent reward's work record (`borgusb.ledger.taskwork`) and the two checks around it: the
witness side of the agent cell (`cells.agents.earnings.Earnings.witness`) and the reserve holder's
per-host daily cap (`cells.peerpays.taskcheck.TaskChecks`). Pure: no sockets."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from borgusb.cells.agents.earnings import WITNESS_WINDOW_MS, Earnings
from borgusb.cells.kit import RequestError
from borgusb.cells.peerpays.taskcheck import MAX_TASKS_PER_HOST_DAY, TaskChecks
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.ledger import RESERVE, sign_reward
from borgusb.ledger.rules import HOUR_MS, amount
from borgusb.ledger.taskwork import (
    MAX_CLAIM_AGE_MS,
    check_task,
    check_task_claim,
    make_task,
    sign_claim,
    sign_confirm,
    sign_host,
    task_ref,
)
from borgusb.ledger.work import BadWork
from borgusb.net.peer import PeerClient
from borgusb.signed import SignedDocError

AGENT, HOST, W1, W2 = (SigningKey.generate() for _ in range(4))
VICTIM = SigningKey.generate().public_key_hex
SUBJECT = f"cell_gone|peerMemoryCell|{VICTIM}"
T = 1_800_000_000_000
OWED = amount("agent", 1)


def claim(agent: SigningKey = AGENT, subject: str = SUBJECT, ts: int = T) -> dict[str, Any]:
    return sign_claim(agent, "anomaly_report", subject, "cell_gone: peerMemoryCell on 127.0.0.4", ts)


def record(c: dict[str, Any] | None = None, witnesses: tuple[SigningKey, ...] = (W1,)) -> dict[str, Any]:
    c = c or claim()
    return make_task(c, sign_host(HOST, c), [sign_confirm(w, c, T + 1000) for w in witnesses]).doc


def reward(rec: dict[str, Any], *, to: SigningKey = AGENT, owed: int = OWED) -> Any:
    ref = check_task(rec).ref
    return sign_reward(to, seq=1, prev="0" * 64, amount=owed, ref=ref, ts=T)


def refused(doc: Any) -> str:
    with pytest.raises(BadWork) as exc:
        check_task(doc)
    return exc.value.reason


def test_a_confirmed_claim_checks_out_and_pays_the_rule() -> None:
    rec = check_task(record(witnesses=(W1, W2)))
    assert (rec.agent, rec.host, rec.amount, rec.subject) == (AGENT.public_key_hex, HOST.public_key_hex, OWED, SUBJECT)
    assert set(rec.witnesses) == {W1.public_key_hex, W2.public_key_hex}
    assert OWED == 50_000_000  # 0.5 Shell, the agent rule
    check_task_claim(rec, reward(rec.doc), T + 60_000)


def test_one_payment_per_subject_and_hour_whoever_claims_it() -> None:
    mine, theirs = check_task(record()), check_task(record(claim(W2)))
    assert mine.claim_id != theirs.claim_id and mine.ref == theirs.ref == task_ref(SUBJECT, T)
    later = check_task(record(claim(ts=T + HOUR_MS)))
    assert later.ref != mine.ref


def test_every_signature_is_checked() -> None:
    doc = record()
    assert refused({**doc, "claim": {**doc["claim"], "evidence": "everything died"}}) == "bad_work"
    assert refused({**doc, "host": {**doc["host"], "node": W2.public_key_hex}}) == "bad_work"
    forged_confirm = {**doc["confirms"][0], "node": W2.public_key_hex}
    assert refused({**doc, "confirms": [forged_confirm]}) == "bad_work"
    other = claim(ts=T + 1)
    assert refused({**doc, "host": sign_host(HOST, other)}) == "bad_work"  # a voucher for another claim
    assert refused({**doc, "confirms": [sign_confirm(W1, other, T)]}) == "bad_work"


def test_witnesses_are_distinct_and_not_the_host() -> None:
    c = claim()
    host = sign_host(HOST, c)
    assert refused({**record(c), "confirms": []}) == "too_few_confirmations"
    doc = {**record(c), "confirms": [sign_confirm(HOST, c, T)]}
    assert refused(doc) == "self_confirmed"
    doc = {**record(c), "host": host, "confirms": [sign_confirm(W1, c, T), sign_confirm(W1, c, T + 1)]}
    assert refused(doc) == "self_confirmed"


def test_shape_bounds_and_amount() -> None:
    doc = record()
    assert refused({**doc, "amount": OWED * 2}) == "wrong_amount"
    assert refused({**doc, "rule": "hold"}) == "bad_work"
    assert refused({**doc, "extra": 1}) == "bad_work"
    assert refused({**doc, "confirms": [doc["confirms"][0]] * 9}) == "bad_work"
    assert refused("junk") == "bad_work"
    with pytest.raises(SignedDocError):
        claim(subject="cell_gone|peerMemoryCell|not-a-key")
    with pytest.raises(SignedDocError):
        sign_claim(AGENT, "paid_twice", SUBJECT, "x", T)


def test_the_reward_must_be_exactly_the_records() -> None:
    rec = check_task(record())

    def why(tx: Any, now: int = T + 60_000) -> str:
        with pytest.raises(BadWork) as exc:
            check_task_claim(rec, tx, now)
        return exc.value.reason

    assert why(reward(record(claim(ts=T + HOUR_MS)))) == "work_ref_mismatch"
    assert why(sign_reward(W1, seq=1, prev="0" * 64, amount=OWED, ref=rec.ref, ts=T)) == "wrong_claimant"
    assert why(reward(rec.doc, owed=OWED + 1)) == "wrong_amount"
    assert why(reward(rec.doc), T + MAX_CLAIM_AGE_MS + 1) == "too_old"
    assert why(reward(rec.doc), T - 10 * 60_000) == "future"
    assert reward(rec.doc).account == RESERVE


def test_a_witness_confirms_only_what_its_own_monitor_saw() -> None:
    counters: Counter[str] = Counter()
    ours = {AGENT.public_key_hex}

    async def no_members() -> dict[str, str] | None:
        return None

    desk = Earnings(W1, None, "127.0.0.9", lambda: T, counters, no_members, lambda k: k in ours, 1.0)  # type: ignore[arg-type]

    def why(doc: Any, asker: str = "a") -> str:
        with pytest.raises(RequestError) as exc:
            desk.witness(doc, asker)
        return exc.value.reason

    c = claim(W2)
    assert why(c) == "not_observed"
    desk.observe(SUBJECT, T + WITNESS_WINDOW_MS + 1)
    assert why(c) == "not_observed"  # seen, but too far from the claim's time
    desk.observe(SUBJECT, T + 5_000)
    conf = desk.witness(c, "a")
    assert conf["node"] == W1.public_key_hex
    assert check_task({**record(c), "confirms": [conf]}).witnesses == (W1.public_key_hex,)
    assert why(claim(AGENT)) == "own_claim"
    assert why({**c, "evidence": "x"}) == "bad_signature"
    for _ in range(80):
        try:
            desk.witness(c, "flooder")
        except RequestError as exc:
            assert exc.reason == "rate_limited"
            break
    else:
        raise AssertionError("no rate limit")
    assert counters["agent_confirm_refused:not_observed"] == 2


def test_a_host_is_paid_a_bounded_number_of_tasks_a_day() -> None:
    clock = SystemClock()
    checks = TaskChecks(PeerClient(SigningKey.generate(), clock, Verifier(clock)), "127.0.0.9", Counter())
    recs = []
    for i in range(MAX_TASKS_PER_HOST_DAY):
        subject = f"cell_gone|peerMemoryCell|{SigningKey.generate().public_key_hex}"
        recs.append(check_task(record(claim(subject=subject, ts=T + i))))
        checks._count(recs[-1])
    one_more = check_task(record(claim(subject=f"cell_gone|shardTreeCell|{VICTIM}", ts=T)))
    with pytest.raises(RequestError) as exc:
        checks._count(one_more)
    assert exc.value.reason == "task_limit"
    checks._count(recs[0])  # the same task offered again is not one more
    next_day = check_task(record(claim(subject=f"cell_gone|shardTreeCell|{VICTIM}", ts=T + 24 * HOUR_MS)))
    checks._count(next_day)
