"""peerPaysCell's hash-time-locked transfers: the receptors that resolve a lock (`borgusb.ledger.htlc`).

A lock itself is an ordinary chain transaction, sent with ``pay.send`` (its certificate goes to the
payer's holders only: it credits nobody). What is new is its resolution:

* **Holder receptors** (the lock's payer's holders): ``pay.resolve`` (vote for a claim or a refund:
  `DurableHolder.resolve`, the vote on disk before it is answered, one resolution per lock id),
  ``pay.settle`` (a certified resolution: recorded as resolved, and/or credited to its beneficiary)
  and ``pay.lock`` (this holder's view of one lock).
* **Entry receptors** (a wallet's local cell): ``pay.claim`` / ``pay.refund`` (offer the resolution to
  the lock's holders in parallel, catch up any that lack the lock's certificate, certify at quorum,
  deliver to the payer's and the beneficiary's holders) and ``pay.lock_status`` (open, claimed with
  its preimage, or refunded, only when a quorum of the lock's holders says the same).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ... import envelope
from ...ledger.accounts import is_account
from ...ledger.certificate import MAX_SIGS, HolderSets, set_digest
from ...ledger.durable import DurableHolder
from ...ledger.errors import REASONS, LedgerError
from ...ledger.htlc import (
    Resolution,
    ResolutionCertificate,
    Vote,
    certify_resolution,
    check_known_resolution,
    check_resolution,
    check_resolution_certificate,
    check_vote,
    resolution_certificate_from_dict,
    yield_threshold,
)
from ...ledger.tx import Tx, check_tx
from ..kit import RequestError, receptor
from ..kit.holdercell import HolderCell
from .statuses import refusal

_HEX64 = re.compile(r"[0-9a-f]{64}")


class HtlcReceptors(HolderCell):
    """The lock-resolution receptors; `PeerPaysCell` derives from this class and supplies the holder,
    the member view and the requests to other holders (declared here for the type checker only)."""

    if TYPE_CHECKING:
        ledger: DurableHolder
        view: str
        faulty: int

        @property
        def sets(self) -> HolderSets: ...
        async def refresh_view(self) -> bool: ...
        def _holders(self, account: str) -> tuple[tuple[str, ...], int]: ...
        def _refuse(self, exc: LedgerError) -> RequestError: ...
        async def _bounded(self, holder: str, type: str, payload: dict[str, Any]) -> dict[str, Any] | str: ...
        async def _catch_up(self, holder: str, account: str, seq: int) -> bool: ...
        async def hand_over_lock(self, res: Resolution) -> None: ...
        async def handed_over(self, view: str, hand: Callable[[], Awaitable[None]]) -> None: ...
        def check_sealed(self, account: str, seq: int | None) -> None: ...

    # ------------------------------------------------------------ parsing

    def _resolution(self, payload: Any) -> Resolution:
        doc = payload.get("resolution") if isinstance(payload, dict) else None
        try:
            return check_resolution(doc)
        except LedgerError as exc:
            raise self._refuse(exc) from None

    def _find_lock(self, account: str, lock_id: str) -> Tx | None:
        """The lock with this id in this holder's chain of `account` (or in a resolution it recorded)."""
        st = self.ledger.holder.state
        done = st.resolved.get(lock_id)
        if done is not None:
            return done.resolution.lock
        chain = st.chains.get(account)
        for entry in reversed(chain.entries if chain else []):
            if entry.tx.id == lock_id and entry.tx.kind == "htlc-lock":
                return entry.tx
        return None

    # ------------------------------------------------------------ holder receptors

    def resolve_local(self, res: Resolution, view: str, proof: list[Vote] | None = None) -> Vote:
        if view and view != self.view:
            self.counters["pay_refused:view_mismatch"] += 1
            raise RequestError("view_mismatch", f"this holder's member view is {self.view}, not {view}", 409)
        self._holders(res.lock.account)
        self.check_sealed(res.lock.account, None)
        try:
            return self.ledger.resolve(res, self.clock.now_ms(), proof or [])
        except LedgerError as exc:
            raise self._refuse(exc) from None

    @receptor("pay.resolve")
    async def _r_resolve(self, env: envelope.Envelope) -> Any:
        res = self._resolution(env.payload)
        view = env.payload.get("view", "")
        if not isinstance(view, str):
            raise RequestError("malformed", "view is the digest of the member view")
        proof = env.payload.get("votes", [])
        if not isinstance(proof, list) or len(proof) > MAX_SIGS:
            raise RequestError("malformed", f"votes is a list of at most {MAX_SIGS} holders' votes")
        try:
            votes = [check_vote(v, verify=False) for v in proof]  # verified by the holder, if it needs them
        except LedgerError as exc:
            raise self._refuse(exc) from None
        if view and view != self.view:
            await self.refresh_view()
        vote = await self.vote_resolution(res, view, votes)
        self.counters["pay_resolution_votes"] += 1
        return {"vote": vote.to_dict()}

    async def vote_resolution(self, res: Resolution, view: str, proof: list[Vote] | None = None) -> Vote:
        """This holder's vote on `res`, offered under `view`: the lock handed over from its payer's previous
        holder sets first (`handover.py`), then the core's rules."""
        await self.handed_over(view, lambda: self.hand_over_lock(res))
        return self.resolve_local(res, view, proof)

    def settle_local(self, cert: ResolutionCertificate) -> list[str]:
        self._holders(cert.resolution.lock.account)
        try:
            ev = self.ledger.settle(cert)
        except LedgerError as exc:
            raise self._refuse(exc) from None
        return [n for n, on in (("recorded", ev.record), ("credited", ev.credit)) if on] or ["again"]

    @receptor("pay.settle")
    async def _r_settle(self, env: envelope.Envelope) -> Any:
        doc = env.payload.get("cert") if isinstance(env.payload, dict) else None
        try:
            cert = resolution_certificate_from_dict(doc)
        except LedgerError as exc:
            raise self._refuse(exc) from None
        events = self.settle_local(cert)
        self.counters["pay_settlements"] += 1
        return {"lock": cert.resolution.lock.id, "events": events}

    def lock_local(self, account: str, lock_id: str) -> dict[str, Any]:
        self._holders(account)
        h = self.ledger.holder
        if not h.holds(account):
            self.counters["pay_refused:not_holder"] += 1
            raise RequestError("not_holder", f"{h.pubkey[:16]} does not hold {account[:16]}", 403)
        lock = self._find_lock(account, lock_id)
        if lock is None or lock.account != account:
            return {"holder": h.pubkey, "lock": lock_id, "state": "unknown", "resolution": None}
        a = h.lock_answer(lock)
        return {
            "holder": h.pubkey,
            "lock": lock_id,
            "state": a.state,
            "tx": lock.to_dict(),
            "resolution": a.resolution.to_dict() if a.resolution else None,
        }

    @staticmethod
    def _lock_query(payload: Any) -> tuple[str, str]:
        account = payload.get("account") if isinstance(payload, dict) else None
        lock_id = payload.get("lock") if isinstance(payload, dict) else None
        if not is_account(account) or not isinstance(lock_id, str) or not _HEX64.fullmatch(lock_id):
            raise RequestError("malformed", "account is a public key and lock a transaction id, in lowercase hex")
        return account, lock_id

    def htlc_history(self, account: str, limit: int) -> list[dict[str, Any]]:
        """The latest claims and refunds credited to `account` here, as `pay.account` history rows
        (a lock itself is an ``out`` entry of its payer's chain)."""
        rows = self.ledger.store.db.execute(
            "SELECT cert FROM htlc_settled WHERE account = ? AND credited = 1 ORDER BY rowid DESC LIMIT ?",
            (account, limit),
        ).fetchall()
        out: list[dict[str, Any]] = []
        for (cert_json,) in rows:
            res = resolution_certificate_from_dict(json.loads(cert_json), verify=False).resolution
            lock = res.lock
            peer = lock.account if res.kind == "htlc-claim" else lock.to
            out.append(
                {"dir": "in", "id": res.id, "seq": lock.seq, "peer": peer, "amount": lock.amount}
                | {"kind": res.kind, "ts": lock.ts, "confirmed": True}
            )
        return out

    @receptor("pay.lock")
    async def _r_lock(self, env: envelope.Envelope) -> Any:
        return self.lock_local(*self._lock_query(env.payload))

    # ------------------------------------------------------------ entry receptors

    async def _offer_resolution(
        self, res: Resolution, holders: Iterable[str], proof: list[Vote] | None = None
    ) -> dict[str, Vote | str]:
        """Each holder's vote for `res` or the reason it gave none; `proof`: claim votes shown to holders
        that voted for the refund (`Holder.decide_resolve`)."""

        digest = self.sets.digest(res.lock.account)

        async def one(holder: str) -> Vote | str:
            if holder == self.key.public_key_hex:
                try:
                    return await self.vote_resolution(res, self.view, proof)
                except RequestError as exc:
                    return exc.reason
            payload = {"resolution": res.to_dict(), "view": self.view, "votes": [v.to_dict() for v in proof or []]}
            got = await self._bounded(holder, "pay.resolve", payload)
            if isinstance(got, str):
                return got
            try:
                vote = check_vote(got.get("vote"))
            except LedgerError:
                return "bad_reply"
            expect = (holder, res.lock.id, res.id, digest)
            return vote if (vote.holder, vote.lock, vote.id, vote.set_id) == expect else "bad_reply"

        hs = list(holders)
        answers: dict[str, Vote | str] = dict(zip(hs, await asyncio.gather(*(one(h) for h in hs)), strict=True))
        lagging = [h for h, a in answers.items() if a == "unknown_lock"]
        if lagging:  # a holder that lacks the lock's certificate: send the chain up to it, then offer again
            lock = res.lock
            caught = await asyncio.gather(*(self._catch_up(h, lock.account, lock.seq + 1) for h in lagging))
            again = [h for h, ok in zip(lagging, caught, strict=True) if ok]
            answers.update(zip(again, await asyncio.gather(*(one(h) for h in again)), strict=True))
        return answers

    async def _deliver_resolution(self, cert: ResolutionCertificate) -> dict[str, Any]:
        res = cert.resolution
        targets = list(dict.fromkeys([*self.sets.of(res.lock.account), *self.sets.of(res.beneficiary)]))

        async def one(holder: str) -> str:
            if holder == self.key.public_key_hex:
                try:
                    self.settle_local(cert)
                    return "ok"
                except RequestError as exc:
                    return exc.reason
            got = await self._bounded(holder, "pay.settle", {"cert": cert.to_dict()})
            return got if isinstance(got, str) else "ok"

        results = dict(zip(targets, await asyncio.gather(*(one(h) for h in targets)), strict=True))
        refused = {h[:16]: r for h, r in results.items() if r != "ok"}
        if refused:
            self.counters["pay_delivery_incomplete"] += 1
        return {"delivered": len(targets) - len(refused), "of": len(targets), "refused": refused}

    async def _send_resolution(self, env: envelope.Envelope, kind: str) -> dict[str, Any]:
        res = self._resolution(env.payload)
        if res.kind != kind:
            raise RequestError("malformed", f"this receptor takes an {kind}, not an {res.kind}")
        holders, q = self._holders(res.lock.account)
        answers = await self._offer_resolution(res, holders)
        votes = [a for a in answers.values() if isinstance(a, Vote)]
        yielding = [h for h, a in answers.items() if a == "already_resolved"]
        if res.kind == "htlc-claim" and q > len(votes) >= yield_threshold(len(holders), q, self.faulty) and yielding:
            answers.update(await self._offer_resolution(res, yielding, votes))  # the refund can no longer win
            votes = [a for a in answers.values() if isinstance(a, Vote)]
        if len(votes) < q:
            self.counters["pay_resolution_refused"] += 1
            refusals = {h: a for h, a in answers.items() if isinstance(a, str)}
            ledger = Counter(r for r in refusals.values() if r in REASONS)
            reason = ledger.most_common(1)[0][0] if ledger else "no_quorum"
            said = ", ".join(f"{h[:8]}: {r}" for h, r in sorted(refusals.items()))
            detail = f"{len(votes)} of {len(answers)} holders voted for {res.id[:16]}, {q} needed ({said})"
            raise refusal(reason, detail)
        cert = check_resolution_certificate(certify_resolution(res, votes, set_digest(holders)), holders, q)
        delivery = await self._deliver_resolution(cert)
        self.counters["pay_resolved"] += 1
        return {
            "id": res.id,
            "kind": res.kind,
            "lock": res.lock.id,
            "beneficiary": res.beneficiary,
            "amount": res.lock.amount,
            "certificate": {"signers": list(cert.signers), "quorum": q, "holders": len(holders)},
            "cert": cert.to_dict(),
            **delivery,
        }

    @receptor("pay.claim")
    async def _r_claim(self, env: envelope.Envelope) -> Any:
        return await self._send_resolution(env, "htlc-claim")

    @receptor("pay.refund")
    async def _r_refund(self, env: envelope.Envelope) -> Any:
        return await self._send_resolution(env, "htlc-refund")

    @receptor("pay.lock_status")
    async def _r_lock_status(self, env: envelope.Envelope) -> Any:
        """A lock's state as a quorum of its payer's holders says it: open, claimed (with the preimage,
        the swap's secret) or refunded; else the refusal ``disagreement`` listing the answers."""
        account, lock_id = self._lock_query(env.payload)
        holders, q = self._holders(account)

        async def one(holder: str) -> dict[str, Any] | str:
            if holder == self.key.public_key_hex:
                try:
                    return self.lock_local(account, lock_id)
                except RequestError as exc:
                    return exc.reason
            return await self._bounded(holder, "pay.lock", {"account": account, "lock": lock_id})

        docs = dict(zip(holders, await asyncio.gather(*(one(h) for h in holders)), strict=True))
        says: dict[str, tuple[str, str]] = {}
        proof: dict[tuple[str, str], ResolutionCertificate | None] = {}
        for h, d in docs.items():
            answer = self._lock_answer(h, account, lock_id, d)
            if answer is not None:
                says[h] = answer[0]
                proof[answer[0]] = answer[1]
        counts = Counter(says.values())
        agreed = next((s for s, n in counts.items() if n >= q), None)
        if agreed is None:
            self.counters["pay_disagreements"] += 1
            said = ", ".join(f"{h[:8]}: {says.get(h, d if isinstance(d, str) else '?')}" for h, d in docs.items())
            raise RequestError("disagreement", f"no {q} holders agree on lock {lock_id[:16]}; {said}", 503)
        cert = proof[agreed]
        return {
            "account": account,
            "lock": lock_id,
            "tx": self._lock_tx(lock_id, docs.values()),
            "state": agreed[0],
            "resolution": agreed[1],
            "preimage": cert.resolution.preimage if cert else "",
            "cert": cert.to_dict() if cert else None,
            "holders": sorted(h for h, s in says.items() if s == agreed),
            "quorum": q,
        }

    @staticmethod
    def _lock_tx(lock_id: str, docs: Iterable[dict[str, Any] | str]) -> dict[str, Any] | None:
        """The lock transaction itself, from any holder's answer: it proves itself (the payer's signature,
        and its id is the one asked for), so a counterparty reads the terms from the ledger."""
        for d in docs:
            if isinstance(d, dict) and isinstance(d.get("tx"), dict):
                try:
                    tx = check_tx(d["tx"])
                except LedgerError:
                    continue
                if tx.id == lock_id and tx.kind == "htlc-lock":
                    return tx.to_dict()
        return None

    def _lock_answer(
        self, holder: str, account: str, lock_id: str, doc: dict[str, Any] | str
    ) -> tuple[tuple[str, str], ResolutionCertificate | None] | None:
        """A holder's answer to ``pay.lock`` as (state, resolution id), with the certificate that proves a
        resolved state (checked here: a holder's word alone never names a preimage)."""
        if not isinstance(doc, dict) or doc.get("lock") != lock_id:
            return None
        state = doc.get("state")
        if state in ("unknown", "open"):
            return (state, ""), None
        try:
            cert = resolution_certificate_from_dict(doc.get("resolution"))
            check_known_resolution(cert, self.sets)
        except LedgerError:
            return None
        res = cert.resolution
        if res.lock.id != lock_id or res.lock.account != account:
            return None
        return ("claimed" if res.kind == "htlc-claim" else "refunded", res.id), cert
