"""Settlement of one fill where its party's key is: `swap.py`'s state machine on the two ledgers.

The exchange's replicas hold no one's keys, so each party runs its own side of the swap (a
conduit or a wallet process with the person's key): a `Settlement` feeds the machine what
the Shell ledger (`PayClient`), the Dogecoin bridge (`DogeNodeClient`) and the other party's
notes (`BtraderClient.notes`) show, and carries out its actions:

* ``LockShells``: `sign_lock` at the account's head, ``pay.lock``; then a note ``lock=<id>``.
* ``LockDoge``: the P2SH HTLC (`htlc_script`: the fill's secret hash, the seller's key claims,
  the buyer's refunds at a block height ``doge_lock_ms`` of one-minute blocks ahead), paid from
  the buyer's own confirmed outputs (`build_payment`), broadcast; a note ``doge={txid, vout,
  locktime}``; the HTLC's address watched, so its claim (and the secret) is seen.
* ``ClaimDoge`` / ``RefundDoge``: `build_htlc_claim` / `build_htlc_refund`, broadcast (a refund
  the node refuses before the locktime is tried again on the next step).
* ``ClaimShells`` / ``RefundShells``: `sign_claim` / `sign_refund`, ``pay.claim`` / ``pay.refund``.
* **Vouchers**: once the bridge took this party's Dogecoin transaction (the funding, a deposit; the
  claim or refund, a withdrawal), the party signs a voucher that the bridge (the dogeNodeCell's node
  key, the signer of its replies) served its swap, and hands it to that bridge (``doge.voucher``): what
  the bridge claims its reward with (docs/ledger.md, "The bridge reward"). A voucher the bridge does
  not take is noted in `errors` and never holds the swap up.

What the other party says is checked against the ledgers before it becomes an event: a note's
lock id must be a certified lock of the seller to the buyer (``pay.lock_status`` returns the
payer-signed lock), a note's outpoint must pay the fill's koinu to the HTLC address that the
terms and the locktime give. Every call is bounded by the clients' timeouts; `step` is one
round, and a caller repeats it until `done`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from ...doge.address import p2pkh_address, script_pubkey
from ...doge.htlc import build_htlc_claim, build_htlc_refund, extract_secret, htlc_address, htlc_script
from ...doge.scan import read_tx
from ...doge.tx import DUST_KOINU, Utxo, build_payment
from ...exchange.swap import (
    Action,
    BuyerSwap,
    ClaimDoge,
    ClaimShells,
    DogeLocked,
    Event,
    LockDoge,
    LockShells,
    RefundDoge,
    RefundShells,
    Resolved,
    SecretSeen,
    SellerSwap,
    ShellsLocked,
    SwapTimes,
    Terms,
)
from ...keys import SigningKey
from ...ledger import Tx, check_tx, sign_claim, sign_lock, sign_refund
from ...ledger.bridgework import sign_voucher
from ...ledger.errors import LedgerError
from ...net.peer import PeerError
from ..dogenode.client import DogeNodeClient
from ..peerpays.client import PayClient
from .client import BtraderClient

BLOCK_MS = 60_000  # Dogecoin's target block interval: a Doge timeout in blocks
FEE = 1_000_000  # 0.01 DOGE, the network's recommended minimum for a small transaction
FINAL_STATES = ("done", "refunded", "abandoned")
COINBASE_MATURITY = {"main": 240, "test": 240, "regtest": 60}  # Dogecoin Core's, in blocks
MIN_SWAP_KOINU = FEE + DUST_KOINU  # a smaller HTLC could not pay for its own claim


class Settlement:
    """One party's side of one fill's swap."""

    def __init__(
        self,
        key: SigningKey,
        fill: dict[str, Any],
        times: SwapTimes,
        *,
        pay: PayClient,
        doge: DogeNodeClient,
        bt: BtraderClient,
        net: str,
        now_ms: Callable[[], int],
    ) -> None:
        self.key, self.times, self.pay, self.doge, self.bt, self.net, self.now = key, times, pay, doge, bt, net, now_ms
        self.terms = Terms(fill["id"], fill["seller"], fill["buyer"], fill["amount"], fill["koinu"])
        me = key.public_key_hex
        if me not in (self.terms.seller, self.terms.buyer):
            raise ValueError("this key is no party to the fill")
        self.role = "seller" if me == self.terms.seller else "buyer"
        self.machine: SellerSwap | BuyerSwap = (
            SellerSwap(self.terms, times, os.urandom(32), now_ms())
            if self.role == "seller"
            else BuyerSwap(self.terms, times, now_ms())
        )
        self.lock_tx: Tx | None = None
        self.script = b""
        self.outpoint: tuple[str, int] = ("", 0)
        self.queue: list[Action] = self.machine.begin() if isinstance(self.machine, SellerSwap) else []
        self.my_note: dict[str, Any] = {}  # what this party told the other (sent again if a replica lacks it)
        self.log: list[str] = []  # what happened, for the page and for tests
        self.errors: list[str] = []

    @property
    def state(self) -> str:
        return self.machine.state

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    def _addr(self, pubkey_hex: str) -> str:
        return p2pkh_address(bytes.fromhex(pubkey_hex), self.net)

    # ------------------------------------------------------------ one round

    async def step(self) -> str:
        """Observe, feed the machine, carry out its actions; the state after the round."""
        now = self.now()
        actions = self.queue
        self.queue = []
        try:
            for ev in await self._observe():
                actions += self.machine.on_event(now, ev)
            actions += self.machine.on_tick(now)
            for action in actions:
                await self._carry_out(action)
        except (PeerError, ValueError) as exc:  # a node did not answer or refused, a transaction could not be
            # built yet (no confirmed funds, a refund before its locktime): the next round tries again
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.errors = self.errors[-20:]
        return self.state

    async def _carry_out(self, a: Action) -> None:
        now = self.now()
        if isinstance(a, LockShells):
            head = await self.pay.balance(self.key.public_key_hex)
            tx = sign_lock(
                self.key, seq=head["seq"] + 1, prev=head["head"], to=a.to, amount=a.amount,
                hash_lock=a.hash, expiry=a.expiry, ts=now,
            )  # fmt: skip
            await self.pay.lock(tx)
            self.lock_tx = tx
            await self._note(lock=tx.id)
            self.queue += self.machine.on_event(now, self._shells_locked(tx))
            self.log.append(f"locked {a.amount} Shell units: {tx.id}")
        elif isinstance(a, LockDoge):
            await self._lock_doge(a)
        elif isinstance(a, ClaimDoge):
            txid, vout = self.outpoint
            raw = build_htlc_claim(
                txid, vout, self.terms.koinu, self.script, self.machine_secret(), self.key,
                self._addr(self.key.public_key_hex), FEE, self.net,
            )  # fmt: skip
            txid = await self.doge.broadcast(raw)
            self.log.append(f"claimed the Doge: {txid}")
            self.queue += self.machine.on_event(now, Resolved("claim"))
            await self._vouch("withdrawal", txid)
        elif isinstance(a, RefundDoge):
            txid, vout = self.outpoint
            raw = build_htlc_refund(
                txid, vout, self.terms.koinu, self.script, self.key, self._addr(self.key.public_key_hex), FEE, self.net
            )
            txid = await self.doge.broadcast(raw)
            self.log.append(f"refunded the Doge: {txid}")
            self.queue += self.machine.on_event(now, Resolved("refund"))
            await self._vouch("withdrawal", txid)
        elif isinstance(a, ClaimShells):
            assert self.lock_tx is not None
            await self.pay.claim(sign_claim(self.key, self.lock_tx, a.secret))
            self.log.append("claimed the Shells")
            self.queue += self.machine.on_event(now, Resolved("claim"))
        elif isinstance(a, RefundShells):
            assert self.lock_tx is not None
            await self.pay.refund(sign_refund(self.key, self.lock_tx))
            self.log.append("refunded the Shells")
            self.queue += self.machine.on_event(now, Resolved("refund"))

    async def _vouch(self, op: str, txid: str) -> None:
        """Hand the bridge that took `txid` this party's voucher for it (a failure is only noted)."""
        if self.lock_tx is None:
            return
        try:
            bridge = await self.doge.node_key()
            voucher = sign_voucher(self.key, bridge, self.lock_tx.account, self.lock_tx.id, op, txid, self.now())
            await self.doge.voucher(voucher, self.script)
            self.log.append(f"vouched for bridge {bridge[:16]}: {op} {txid}")
        except (PeerError, ValueError) as exc:  # a bridge that does not answer, or a key that is none
            self.errors.append(f"the bridge did not take the voucher for {txid}: {exc}")

    def machine_secret(self) -> bytes:
        assert isinstance(self.machine, SellerSwap)
        return self.machine.secret

    @staticmethod
    def _shells_locked(tx: Tx) -> ShellsLocked:
        return ShellsLocked(tx.id, tx.account, tx.to, tx.amount, tx.ref, tx.expiry)

    async def _lock_doge(self, a: LockDoge) -> None:
        height = await self.doge.height()
        locktime = height + math.ceil((a.expiry - self.now()) / BLOCK_MS)
        self.script = htlc_script(bytes.fromhex(a.hash), bytes.fromhex(a.claimant), self.key.public_key, locktime)
        where = htlc_address(self.script, self.net)
        mine = self._addr(self.key.public_key_hex)
        await self.doge.watch(mine)
        spendable = [
            Utxo(d["txid"], d["vout"], d["amount"])
            for d in await self.doge.deposits(mine)
            if d.get("spent_by") is None
            and d.get("confirmations", 0) >= (COINBASE_MATURITY.get(self.net, 240) + 1 if d.get("coinbase") else 1)
        ]
        spendable.sort(key=lambda u: -u.amount)
        picked: list[Utxo] = []
        for u in spendable:
            if sum(p.amount for p in picked) >= a.koinu + FEE:
                break
            picked.append(u)
        raw = build_payment(picked, [(where, a.koinu)], self.key, self.net, FEE)
        txid = await self.doge.broadcast(raw)
        self.outpoint = (txid, 0)
        await self.doge.watch(where, self.script)
        await self._note(doge={"txid": txid, "vout": 0, "locktime": locktime})
        self.log.append(f"locked {a.koinu} koinu in {where}: {txid}")
        self.queue += self.machine.on_event(
            self.now(), self._doge_locked(a.hash, a.claimant, a.koinu, locktime, height, 0)
        )
        await self._vouch("deposit", txid)

    def _doge_locked(
        self, hash_hex: str, claimant: str, koinu: int, locktime: int, height: int, conf: int
    ) -> DogeLocked:
        txid, vout = self.outpoint
        expiry = self.now() + (locktime - height) * BLOCK_MS
        return DogeLocked(f"{txid}:{vout}", claimant, koinu, hash_hex, expiry, conf)

    # ------------------------------------------------------------ what the other party did

    async def _note(self, **data: Any) -> None:
        self.my_note = {"fill": self.terms.fill, **data}
        await self.bt.note(self.terms.fill, **data)

    async def _observe(self) -> list[Event]:
        notes = await self.bt.notes(self.terms.fill)
        if self.my_note and notes.get(self.key.public_key_hex) != self.my_note:
            await self.bt.note(**self.my_note)  # this replica missed it, or did not know the fill yet
        other = self.terms.buyer if self.role == "seller" else self.terms.seller
        note = notes.get(other, {})
        if self.role == "buyer":
            return await self._observe_as_buyer(note)
        return await self._observe_as_seller(note)

    async def _observe_as_buyer(self, note: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if self.lock_tx is None and isinstance(note.get("lock"), str):
            st = await self.pay.lock_status(self.terms.seller, note["lock"])
            try:
                tx = check_tx(st.get("tx"))
            except LedgerError as exc:  # a lock that does not prove itself is not one
                self.errors.append(f"the seller's lock does not check: {exc}")
                return out
            if tx.id == note["lock"] and tx.kind == "htlc-lock" and st.get("state") == "open":
                self.lock_tx = tx
                out.append(self._shells_locked(tx))
            else:
                self.errors.append(f"the seller's lock is not an open lock: {st.get('state')}")
        if self.script and self.machine.state == "doge_locked":
            found = await self.doge.deposits(htlc_address(self.script, self.net))
            spent = next((d["spent_by"] for d in found if d.get("spent_by")), None)
            if spent:
                secret = extract_secret(str((await self.doge.tx(spent)).get("hex", "")), self.script)
                if secret is not None:
                    out.append(SecretSeen(secret))
        return out

    async def _observe_as_seller(self, note: dict[str, Any]) -> list[Event]:
        doge = note.get("doge")
        if self.machine.state != "shells_locked" or not isinstance(doge, dict):
            return []
        txid, vout, locktime = doge.get("txid"), doge.get("vout"), doge.get("locktime")
        if not isinstance(txid, str) or not isinstance(vout, int) or not isinstance(locktime, int):
            return []
        hash_hex = self.machine.hash
        script = htlc_script(bytes.fromhex(hash_hex), self.key.public_key, bytes.fromhex(self.terms.buyer), locktime)
        info = await self.doge.tx(txid)
        tx = read_tx(str(info.get("hex", "")), txid)
        if not 0 <= vout < len(tx.vout):
            return []
        out = tx.vout[vout]
        if bytes(out.scriptPubKey) != script_pubkey(htlc_address(script, self.net), self.net):
            return []
        self.script, self.outpoint = script, (txid, vout)
        height = await self.doge.height()
        conf = info.get("confirmations", 0)
        return [
            self._doge_locked(
                hash_hex, self.key.public_key_hex, out.nValue, locktime, height, conf if isinstance(conf, int) else 0
            )
        ]
