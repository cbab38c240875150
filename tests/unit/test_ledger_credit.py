"""Prepaid credit for a priced use (borgusb/ledger/credit.py): each payment once, free first, a use
starts only when paid for, billed over the whole quantity, bounded, and kept across a restart."""

from __future__ import annotations

import json

import pytest

from borgusb.ledger import ZERO_HASH, sign_transfer
from borgusb.ledger.credit import (
    DAY_MS,
    PRESENT_WINDOW_MS,
    CreditBook,
    CreditRefused,
    address_key,
    credit_ref,
    is_key,
)
from borgusb.ledger.rules import amount
from borgusb.ledger.sim import fixed_key

NODE = fixed_key("credit node")
ALICE = fixed_key("credit alice")
NOW = 1_800_000_000_000
FREE_MS = 60_000
SHELL = 100_000_000


def pay(shells_units: int, *, to: str = NODE.public_key_hex, ref: str | None = None, ts: int = NOW, seq: int = 1):
    ref = credit_ref("compute") if ref is None else ref
    return sign_transfer(
        ALICE, seq=seq, prev=ZERO_HASH if seq == 1 else "ab" * 32, to=to, amount=shells_units, ts=ts, ref=ref
    )


def book(pool: int = 100 * FREE_MS) -> CreditBook:
    return CreditBook("compute", NODE.public_key_hex, FREE_MS, pool)


def refused(call, reason: str) -> None:
    with pytest.raises(CreditRefused) as err:
        call()
    assert err.value.reason == reason, err.value.detail


def test_the_credit_ref_names_the_rule_and_only_prices_have_one() -> None:
    assert credit_ref("compute") != credit_ref("stream") and len(credit_ref("storage")) == 64
    with pytest.raises(KeyError):
        credit_ref("hold")  # a reward, paid by the reserve: nobody buys it


def test_free_time_first_then_a_payment_is_needed_and_charged_once_over_the_total() -> None:
    b, a = book(), ALICE.public_key_hex
    b.may_start(a, NOW)  # a key never seen has its free time
    assert b.charge(a, 45_000, NOW) == 0 and b.usage(a, NOW)["free_left"] == 15_000
    b.may_start(a, NOW)
    # the use that starts with free time left is charged in full: 15 s free, 15 s billed, below zero
    assert b.charge(a, 30_000, NOW) == amount("compute", 15_000) == 1_500_000
    assert b.balance(a) == -1_500_000
    refused(lambda: b.may_start(a, NOW), "payment_required")
    assert b.pay_in(pay(SHELL), NOW) == SHELL
    b.may_start(a, NOW)
    # 1000 uses of 1 ms cost what one of 1000 ms does: rounded up once, over the billed total
    for _ in range(1000):
        b.charge(a, 1, NOW)
    assert b.usage(a, NOW)["charged"] == amount("compute", 16_000) == 1_600_000
    assert b.balance(a) == SHELL - 1_600_000


def test_the_free_time_comes_back_the_next_day_but_not_over_a_debt_and_a_zero_allowance_asks_first() -> None:
    b, a = book(), ALICE.public_key_hex
    b.charge(a, FREE_MS, NOW)  # exactly the free time: no debt
    refused(lambda: b.may_start(a, NOW), "payment_required")
    tomorrow = (NOW // DAY_MS + 1) * DAY_MS
    b.may_start(a, tomorrow)
    assert b.usage(a, tomorrow)["free_left"] == FREE_MS
    # a use that ran past the free time leaves a debt: no new day's free time starts a use over it
    b.charge(a, FREE_MS + 5_000, tomorrow)
    after = tomorrow + DAY_MS
    assert b.usage(a, after)["free_left"] == FREE_MS and b.balance(a) < 0
    refused(lambda: b.may_start(a, after), "payment_required")
    b.pay_in(pay(SHELL, ts=after), after)
    b.may_start(a, after)
    strict = CreditBook("compute", NODE.public_key_hex, 0, 0)
    refused(lambda: strict.may_start(a, NOW), "payment_required")


def test_a_payment_is_credited_once_and_only_to_this_node_for_this_rule_within_the_window() -> None:
    b = book()
    good = pay(SHELL)
    assert b.pay_in(good, NOW) == SHELL
    refused(lambda: b.pay_in(good, NOW + 1), "again")
    refused(lambda: b.pay_in(pay(SHELL, to=fixed_key("other node").public_key_hex), NOW), "wrong_payee")
    refused(lambda: b.pay_in(pay(SHELL, ref=""), NOW), "wrong_ref")  # a plain payment is a gift, not credit
    refused(lambda: b.pay_in(pay(SHELL, ref=credit_ref("stream")), NOW), "wrong_ref")
    refused(lambda: b.pay_in(pay(SHELL, ts=NOW - PRESENT_WINDOW_MS - 1, seq=2), NOW), "stale")
    assert b.balance(ALICE.public_key_hex) == SHELL
    # past the window the id is forgotten, and the payment is stale by then: never credited twice
    later = NOW + PRESENT_WINDOW_MS + 1
    refused(lambda: b.pay_in(good, later), "stale")
    assert good.id not in b.ids


def test_all_keys_together_get_at_most_the_pool_of_free_time_a_day() -> None:
    b = book(pool=2 * FREE_MS)
    keys = [fixed_key(f"fresh key {i}").public_key_hex for i in range(3)]
    for k in keys[:2]:
        b.may_start(k, NOW)
        assert b.charge(k, FREE_MS, NOW) == 0
    refused(lambda: b.may_start(keys[2], NOW), "payment_required")  # a new key, but the pool is spent
    assert b.usage(keys[2], NOW)["free_left"] == 0
    assert b.usage(keys[2], NOW + DAY_MS)["free_left"] == FREE_MS


def test_the_cheap_checks_refuse_before_any_signature_is_checked() -> None:
    b = book()
    b.precheck(pay(SHELL), NOW)
    refused(lambda: b.precheck(pay(SHELL, ref=""), NOW), "wrong_ref")
    refused(lambda: b.precheck(pay(SHELL, to=fixed_key("other").public_key_hex), NOW), "wrong_payee")
    b.pay_in(pay(SHELL), NOW)
    refused(lambda: b.precheck(pay(SHELL), NOW), "again")


def test_a_full_book_forgets_an_unpaid_key_first_and_never_a_paid_one() -> None:
    b = CreditBook("compute", NODE.public_key_hex, FREE_MS, 10 * FREE_MS, max_keys=2)
    payer, idle = ALICE.public_key_hex, fixed_key("idle").public_key_hex
    b.pay_in(pay(SHELL), NOW)
    b.charge(idle, 10, NOW)
    b.charge(fixed_key("new").public_key_hex, 10, NOW)  # the idle key goes, the paid one stays
    assert set(b.keys) == {payer, fixed_key("new").public_key_hex}
    b.pay_in(
        sign_transfer(fixed_key("new"), seq=1, prev=ZERO_HASH, to=NODE.public_key_hex, amount=1, ts=NOW, ref=b.ref), NOW
    )
    refused(lambda: b.charge(fixed_key("third").public_key_hex, 10, NOW), "full")
    refused(lambda: b.may_start(fixed_key("third").public_key_hex, NOW), "full")  # refused before it runs


def test_the_book_survives_a_restart_and_drops_what_is_malformed() -> None:
    b = book()
    b.pay_in(pay(SHELL), NOW)
    b.charge(ALICE.public_key_hex, FREE_MS + 10_000, NOW)
    doc = json.loads(json.dumps(b.to_dict()))
    again = book()
    assert again.load(doc) == 0
    assert again.balance(ALICE.public_key_hex) == b.balance(ALICE.public_key_hex) == SHELL - 1_000_000
    refused(lambda: again.pay_in(pay(SHELL), NOW), "again")
    doc["keys"]["not a key"] = [1, 2, 3, 4, 5]
    doc["keys"][fixed_key("x").public_key_hex] = [-1, 0, 0, 0, 0]
    doc["ids"]["short"] = 5
    assert book().load(doc) == 3
    assert book().load({**doc, "payee": fixed_key("elsewhere").public_key_hex}) == 0  # another node's book: nothing
    assert CreditBook("compute", fixed_key("elsewhere").public_key_hex, 0, 0).load(doc) == 0


def test_someone_who_names_no_key_is_charged_to_its_address_and_kept_across_a_restart() -> None:
    b, anon = book(), address_key("192.0.2.7")
    assert is_key(anon) and is_key(ALICE.public_key_hex)
    assert not any(is_key(k) for k in ("addr:", "addr:" + "1" * 65, "192.0.2.7", 7, None))
    b.may_start(anon, NOW)
    b.charge(anon, FREE_MS + 1, NOW)  # started within the free share: charged beyond it
    refused(lambda: b.may_start(anon, NOW), "payment_required")  # an address can never pay
    b.may_start(address_key("192.0.2.8"), NOW)  # another address has a share of its own
    again = book()
    assert again.load(json.loads(json.dumps(b.to_dict()))) == 0
    assert again.balance(anon) == b.balance(anon) < 0
