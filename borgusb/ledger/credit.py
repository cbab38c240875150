"""Prepaid credit at a node that serves a priced rule (docs/ledger.md, "Paying for compute"); no sockets.

A price (`rules.PRICES`) is paid to the node that serves, ahead of the use: the person sends that
node's account an ordinary transfer whose ``ref`` is `credit_ref(rule)` and hands the node its
certificate. The node's peerPaysCell checks the certificate against the payer's holder set (a quorum
of them signed it, so the units left the payer for good); this book then credits the payer, once.

* **Each payment once.** A transfer is taken only within `PRESENT_WINDOW_MS` of its signing and its
  id is remembered that long (the book is saved), so presenting it again credits nothing
  (``again``) and an older one is ``stale``: the window bounds the ids kept. `precheck` runs these
  cheap checks before the certificate's signatures are checked at all.
* **Free first, within a pool.** Each key uses `free` of the rule's quantity per UTC day for nothing,
  and all keys together at most `pool` a day (new keys cost nothing to make, so the node's free
  time is bounded, not each key's). Beyond it the price is ``rules.amount(rule, billed)`` over the
  key's whole billed quantity, rounded up once (rounding each small use up would overcharge).
* **A use starts only when it is paid for**: with credit left (paid minus charged above zero), or
  with free quantity left today and no debt. A use is charged in full when it ends, so a key's
  balance ends below zero by at most the uses it had running when its free time or credit ran out
  (each bounded: a session by its model calls); the next waits for a payment
  (``payment_required``), also on the following days.
* **Someone who names no key** (a browser on a public link) is charged to its address
  (`address_key`): it gets one key's free share a day and can never pay, so beyond it such a viewer
  must come with a key (its conduit signs for it).
* **Bounded.** At most `MAX_KEYS` keys: when full, the least recently seen key that paid nothing is
  forgotten (with it at most its running uses' overrun); a key with a payment is never forgotten,
  and a new key is refused ``full`` before its use starts. At most `MAX_IDS` payments in the window.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .accounts import is_account
from .rules import PRICES, amount
from .tx import Tx

DAY_MS = 86_400_000
PRESENT_WINDOW_MS = 7 * DAY_MS  # a payment is handed to the node within a week of its signing
MAX_KEYS = 4096
MAX_IDS = 8192
REF_DOMAIN = "borgusb.ledger.credit"
ADDRESS_PREFIX = "addr:"
MAX_IP = 64
# a payment refused for one of these is never credited by that node: a wallet keeping its certificate
# for that node drops it
FINAL_REFUSALS = frozenset({"again", "stale", "wrong_payee", "wrong_ref"})


def address_key(ip: str) -> str:
    """The book's key for uses by someone who names no key, at address `ip` (see the module docstring)."""
    return f"{ADDRESS_PREFIX}{ip[:MAX_IP]}"


def is_key(text: Any) -> bool:
    """A key this book keeps: an account, or an address that named none (`address_key`)."""
    if not isinstance(text, str):
        return False
    return is_account(text) or (text.startswith(ADDRESS_PREFIX) and 0 < len(text) - len(ADDRESS_PREFIX) <= MAX_IP)


def credit_ref(rule: str) -> str:
    """The ``ref`` of a transfer that buys credit under `rule` (any other transfer is a plain payment)."""
    if rule not in PRICES:
        raise KeyError(f"{rule!r} is not a price")
    return hashlib.sha256(f"{REF_DOMAIN}:{rule}".encode()).hexdigest()


class CreditRefused(Exception):
    """A payment or a use refused, with its reason word (counted by the cell)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass(slots=True)
class KeyCredit:
    paid: int = 0  # units paid in, all time
    billed: int = 0  # quantity beyond the free allowance, all time
    day: int = 0  # the UTC day `free_used` counts
    free_used: int = 0
    seen_ms: int = 0


class CreditBook:
    """What each key paid this node under one rule, and what its uses cost (see the module docstring)."""

    def __init__(self, rule: str, payee: str, free: int, pool: int, *, max_keys: int = MAX_KEYS) -> None:
        self.rule, self.payee, self.free, self.pool, self.max_keys = rule, payee, free, pool, max_keys
        self.ref = credit_ref(rule)
        self.keys: OrderedDict[str, KeyCredit] = OrderedDict()
        self.ids: dict[str, int] = {}  # payment id -> its ts, for PRESENT_WINDOW_MS
        self.pool_day, self.pool_used = 0, 0

    # ------------------------------------------------------------ payments

    def precheck(self, tx: Tx, now_ms: int) -> None:
        """Refuse, before any signature is checked, a payment this book would never credit."""
        if tx.kind != "transfer" or tx.to != self.payee:
            raise CreditRefused("wrong_payee", f"credit here is bought by a transfer to {self.payee[:16]}…")
        if tx.ref != self.ref:
            raise CreditRefused("wrong_ref", f"a transfer for {self.rule} credit carries ref {self.ref[:16]}…")
        if not now_ms - PRESENT_WINDOW_MS <= tx.ts <= now_ms + 60_000:
            raise CreditRefused("stale", "a payment is taken within a week of its signing")
        if tx.id in self.ids:
            raise CreditRefused("again", "this payment is already credited")

    def pay_in(self, tx: Tx, now_ms: int) -> int:
        """Credit a certified transfer to this node (the caller checked the certificate); the units."""
        self._prune(now_ms)
        self.precheck(tx, now_ms)
        if len(self.ids) >= MAX_IDS:
            raise CreditRefused("full", "too many payments this week; try again later")
        acct = self._key(tx.account, now_ms)
        self.ids[tx.id] = tx.ts
        acct.paid += tx.amount
        return tx.amount

    def _prune(self, now_ms: int) -> None:
        old = [i for i, ts in self.ids.items() if ts < now_ms - PRESENT_WINDOW_MS]
        for i in old:
            del self.ids[i]

    # ------------------------------------------------------------ uses

    def may_start(self, key: str, now_ms: int) -> None:
        """Nothing if `key` may start a use now, else `CreditRefused` (``payment_required``, ``full``)."""
        acct = self.keys.get(key)
        if acct is None and len(self.keys) >= self.max_keys and all(a.paid for a in self.keys.values()):
            raise CreditRefused("full", "this node keeps credit for as many people as it may")
        balance = self.balance(key)
        free_left = self._free_left(acct or KeyCredit(day=now_ms // DAY_MS), now_ms)
        if balance > 0 or (balance == 0 and free_left > 0):
            return
        raise CreditRefused(
            "payment_required",
            f"no free {self.rule} left today here and the credit is {balance} units: "
            f"pay {self.payee[:16]}… ahead (borgusb pay credit)",
        )

    def charge(self, key: str, quantity: int, now_ms: int) -> int:
        """Record a finished use of `quantity`; the units it cost (free quantity first)."""
        if quantity < 0:
            raise ValueError("a use is a non-negative quantity")
        acct = self._key(key, now_ms)
        free = min(quantity, self._free_left(acct, now_ms))
        acct.free_used += free
        self.pool_used += free
        before = amount(self.rule, acct.billed)
        acct.billed += quantity - free
        return amount(self.rule, acct.billed) - before

    def balance(self, key: str) -> int:
        acct = self.keys.get(key)
        return 0 if acct is None else acct.paid - amount(self.rule, acct.billed)

    def usage(self, key: str, now_ms: int) -> dict[str, Any]:
        acct = self.keys.get(key) or KeyCredit(day=now_ms // DAY_MS)
        return {
            "rule": self.rule,
            "payee": self.payee,
            "ref": self.ref,
            "free": self.free,
            "free_left": self._free_left(acct, now_ms),
            "paid": acct.paid,
            "charged": amount(self.rule, acct.billed),
            "balance": acct.paid - amount(self.rule, acct.billed),
        }

    def _free_left(self, acct: KeyCredit, now_ms: int) -> int:
        day = now_ms // DAY_MS
        if acct.day != day:
            acct.day, acct.free_used = day, 0
        if self.pool_day != day:
            self.pool_day, self.pool_used = day, 0
        return max(0, min(self.free - acct.free_used, self.pool - self.pool_used))

    def _key(self, key: str, now_ms: int) -> KeyCredit:
        acct = self.keys.get(key)
        if acct is None:
            if len(self.keys) >= self.max_keys:
                unpaid = next((k for k, a in self.keys.items() if a.paid == 0), None)
                if unpaid is None:
                    raise CreditRefused("full", "this node keeps credit for as many people as it may")
                del self.keys[unpaid]
            acct = self.keys[key] = KeyCredit(day=now_ms // DAY_MS)
        self.keys.move_to_end(key)
        acct.seen_ms = now_ms
        return acct

    # ------------------------------------------------------------ kept on disk

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "payee": self.payee,
            "keys": {k: [a.paid, a.billed, a.day, a.free_used, a.seen_ms] for k, a in self.keys.items()},
            "ids": self.ids,
            "pool": [self.pool_day, self.pool_used],
        }

    def load(self, doc: Any) -> int:
        """Take a saved book of the same rule and payee; the entries dropped as malformed."""
        if not isinstance(doc, dict) or doc.get("rule") != self.rule or doc.get("payee") != self.payee:
            return 0
        dropped = 0
        keys, ids, pool = doc.get("keys"), doc.get("ids"), doc.get("pool")
        for k, row in (keys if isinstance(keys, dict) else {}).items():
            if is_key(k) and isinstance(row, list) and len(row) == 5 and all(_nat(v) for v in row):
                if len(self.keys) < self.max_keys:
                    self.keys[k] = KeyCredit(*row)
                    continue
            dropped += 1
        for i, ts in (ids if isinstance(ids, dict) else {}).items():
            if isinstance(i, str) and len(i) == 64 and _nat(ts) and len(self.ids) < MAX_IDS:
                self.ids[i] = ts
            else:
                dropped += 1
        if isinstance(pool, list) and len(pool) == 2 and all(_nat(v) for v in pool):
            self.pool_day, self.pool_used = pool
        return dropped


def _nat(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
