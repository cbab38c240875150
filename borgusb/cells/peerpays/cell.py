"""peerPaysCell: the Borg Shell ledger's holders and the entry point wallets send to.

The protocol is `borgusb.ledger` (docs/ledger.md); this cell only carries it.

* **The member view.** An account's holder set is the placement lottery's
  choice among the members of this cell's tree, as the tree root's member
  table (``tree.members``) lists them: every node reads the same table, so
  every node computes the same holder set. The cell re-reads it every second;
  its digest (``view``) travels with every offer, and a holder whose view
  differs refuses the offer (``view_mismatch``) rather than vote under another
  holder set. Fewer members than R: no holder set, refused as
  ``too_few_members``. What happens on a membership change is in
  docs/ledger.md ("The cell").
* **Holder receptors**: ``pay.accept`` (a payer-signed transaction: the core's
  `DurableHolder.accept`, durable in SQLite before the signed acceptance is
  answered), ``pay.confirm`` (a certificate: checked, persisted, credited and
  or confirmed), ``pay.account`` (this holder's view of an account: `reads.AccountReads`);
  ``pay.accepts`` and ``pay.confirms`` carry several offers or certificates to one holder at
  once while another request to it is out (`bundles.BundleReceptors`).
* **Entry receptors** (what a wallet calls on its local cell): ``pay.send``
  (offer to the account's holders in parallel, certify once a quorum
  accepted, deliver to the payer's and payee's holders), ``pay.balance``
  (a quorum-agreed balance or a ``disagreement``) and ``pay.history`` (`reads.AccountReads`).
* **Hash-time locks**: a lock is sent with ``pay.send``; its claim or refund and the lock's state
  are the receptors of `htlc.HtlcReceptors`, which this class derives from.

Every refusal is a `RequestError` whose reason is the ledger's word
(``conflicting_spend``, ``insufficient_funds``, ``bad_signature`` ...).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ... import envelope
from ...dna import CellDNA
from ...ledger.accounts import is_account
from ...ledger.bridgework import BRIDGE_REASONS
from ...ledger.certificate import (
    Acceptance,
    Certificate,
    HolderSets,
    certify,
    check_acceptance,
    check_certificate,
    quorum_size,
    set_digest,
)
from ...ledger.contentwork import CONTENT_REASONS
from ...ledger.durable import DurableHolder
from ...ledger.errors import REASONS, ConflictingSpend, LedgerError
from ...ledger.holderstate import Accepted, Confirmed, Credited
from ...ledger.servework import SERVE_REASONS
from ...ledger.taskwork import TASK_REASONS
from ...ledger.tx import Tx, check_tx
from ...ledger.units import UNITS_PER_SHELL
from ...ledger.work import WORK_REASONS
from ...net.peer import PeerError, PeerRejected, PeerUnreachable
from ..kit import RequestError, receptor
from .bridgecheck import BridgeChecks
from .bundles import BundleReceptors
from .client import PayClient
from .contentcheck import ContentChecks
from .directory import DirectoryReceptors
from .earn import HoldChecks
from .equivocation import EquivocationReceptors
from .handoff import MAX_CATCH_UP, HandoffReceptors
from .handover import HandoverReceptors, view_digest
from .htlc import HtlcReceptors
from .reads import AccountReads
from .receipts import ReceiptReceptors
from .settings import TEST_ONLY_WORK_MAX_SHELLS, PeerPaysSettings
from .skipping import SPLIT_SIGNS, SkipReceptors
from .statuses import STATUS as _STATUS
from .statuses import refusal
from .taskcheck import TaskChecks
from .unsettled import UnsettledReceptors

log = logging.getLogger("borgusb.peerpays")

MAX_TAKEN = 16  # other holders' votes carried by one offer (an account has R holders)


def _taken(doc: Any) -> list[Acceptance]:
    """The well-formed votes among an offer's ``taken`` (at most `MAX_TAKEN`; each verified where used)."""
    out = []
    for item in doc[:MAX_TAKEN] if isinstance(doc, list) else []:
        try:
            out.append(check_acceptance(item, verify=False))
        except LedgerError:
            continue
    return out


class PeerPaysCell(
    HtlcReceptors,
    EquivocationReceptors,
    DirectoryReceptors,
    SkipReceptors,
    UnsettledReceptors,
    ReceiptReceptors,
    HandoverReceptors,
    HandoffReceptors,
    AccountReads,
    BundleReceptors,
):
    """A Cell that holds account chains and confirms transfers (settings: `PeerPaysSettings`)."""

    settings: PeerPaysSettings

    def __init__(self, dna: CellDNA, ip: str, **kw: Any) -> None:
        settings = kw.get("settings")
        if not isinstance(settings, PeerPaysSettings):
            settings = kw["settings"] = PeerPaysSettings.from_sources()
        quorum_size(settings.r, settings.faulty)  # r too small for faulty: refused before any port is bound
        # The holder's database is named by its node key (ledger-<key>.sqlite): votes are one key's
        # (where it lives, and why a process-only key's votes go at a clean stop: `HolderCell`).
        super().__init__(dna, ip, data_root=settings.data_root, **kw)
        self.r, self.faulty = settings.r, settings.faulty
        self.offer_timeout_s = settings.offer_timeout_ms / 1000
        self.test_only_work_ref = settings.test_only_work_ref.strip().lower()
        if self.test_only_work_ref and (
            len(self.test_only_work_ref) != 64 or set(self.test_only_work_ref) - set("0123456789abcdef")
        ):
            raise ValueError("peerPaysCell --test-only-work-ref must be a SHA-256 in hex")
        self.view = view_digest(self.members)
        self.db_path = self.records_dir / f"ledger-{self.key.public_key_hex}.sqlite"
        self.holds = HoldChecks(self.peers, ip, self.key.public_key_hex, self.counters)
        self.tasks = TaskChecks(self.peers, ip, self.counters)
        self.contents = ContentChecks(self.peers, ip, self.counters)
        self.bridges = BridgeChecks(self.peers, ip, self.counters)
        self.ledger = DurableHolder(
            self.db_path,
            self.key,
            HolderSets(self.members, self.r, self.faulty, now_ms=self.clock.now_ms),
            verify_work=self._verify_work,
            htlc_grace_ms=settings.htlc_grace_ms,
        )
        self._init_handover()
        self._init_handoff()
        self._load_evidence()
        self._init_directory()
        self._init_bundles()

    # ------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        if self.test_only_work_ref:
            log.warning("peerPaysCell: TEST ONLY work check on: rewards for %s are paid", self.test_only_work_ref)
        await super().on_start()
        self._spawn(self._history_loop())

    async def on_stop(self) -> None:
        self.ledger.close()
        await super().on_stop()  # a temporary records directory goes with its database
        if self.ephemeral_key:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)

    # ------------------------------------------------------------ the reserve's work check

    def _verify_work(self, tx: Tx) -> bool:
        """Which reward claims this holder approves: a hold record (`earn.HoldChecks`), an
        agent's task record (`taskcheck.TaskChecks`), a creator's content record
        (`contentcheck.ContentChecks`) or a bridge's record of a swap leg (`bridgecheck.BridgeChecks`)
        it verified before offering the claim to the core. The
        test-only setting also approves claims on one fixed work record, bounded, paid
        once (the core's already_paid): a test cluster's way to fund an account from the reserve."""
        checks = (self.holds, self.tasks, self.contents, self.bridges)
        if any(c.approves(tx) for c in checks):
            return True
        ref = self.test_only_work_ref
        return bool(ref) and tx.ref == ref and tx.amount <= TEST_ONLY_WORK_MAX_SHELLS * UNITS_PER_SHELL

    async def check_work(self, tx: Tx, work: Any) -> None:
        """Verify the work record a reward claims, by its rule: a shard hold or the bytes a holder
        served (`earn.HoldChecks`), an agent's task, reads of a creator's public media, or a Dogecoin
        leg of a swap a bridge served."""
        rule = work.get("rule") if isinstance(work, dict) else None
        if rule == "agent":
            await self.tasks.check(tx, work, self.clock.now_ms())
        elif rule == "content":
            await self.contents.check(tx, work, self.clock.now_ms())
        elif rule == "bridge":
            await self.bridges.check(tx, work, self.clock.now_ms())
        else:
            await self.holds.check(tx, work, self.clock.now_ms())

    # ------------------------------------------------------------ the member view

    def use_members(self, members: dict[str, str]) -> None:
        """Use the root's member table from now on, less the keys proven to lie (the holder sets follow it)."""
        view = self.without_proven(members)
        if set(view) != set(self.members):
            self.view_ended(self.members, self.view)
            before = self.sets
            self.ledger.holder.sets = HolderSets(
                view, self.r, self.faulty, past=self.past_members(), now_ms=self.clock.now_ms
            )
            self.hand_off(before)
            self.view = view_digest(view)
            self.counters["pay_view_changes"] += 1
        self.members = view

    @property
    def sets(self) -> HolderSets:
        return self.ledger.holder.sets

    def _holders(self, account: str) -> tuple[tuple[str, ...], int]:
        """(holder set, quorum) of an account in the current view, or `too_few_members`."""
        if len(self.members) < self.r:
            raise RequestError(
                "too_few_members",
                f"{len(self.members)} peerPaysCells in this tree; an account needs {self.r} holders",
                503,
            )
        return self.sets.of(account), self.sets.quorum(account)

    # ------------------------------------------------------------ helpers

    def _refuse(self, exc: LedgerError) -> RequestError:
        self.counters[f"pay_refused:{exc.reason}"] += 1
        return refusal(exc.reason, str(exc))

    def _tx(self, payload: Any) -> Tx:
        doc = payload.get("tx") if isinstance(payload, dict) else None
        try:
            return check_tx(doc)
        except LedgerError as exc:
            raise self._refuse(exc) from None

    @staticmethod
    def _account(payload: Any) -> str:
        account = payload.get("account") if isinstance(payload, dict) else None
        if not is_account(account):
            raise RequestError("malformed", "account is a compressed public key in lowercase hex")
        return account

    async def _ask(self, holder: str, type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One request to one holder of the view (or of a past view: `address_of`), its reply checked
        against the holder's key (`PeerRejected` with the holder's reason on a refusal). Tests replace
        this to route in-process."""
        try:
            ip = self.address_of(holder)
        except KeyError:
            raise PeerUnreachable(f"no address known for {holder[:16]}") from None
        client = PayClient(self.peers, ip, pubkey=holder)
        reply = await client.call(type, payload)
        if not isinstance(reply, dict):
            raise PeerRejected(502, "bad_reply", "the reply is not an object")
        return reply

    async def _bounded(self, holder: str, type: str, payload: dict[str, Any]) -> dict[str, Any] | str:
        """The holder's reply, or the reason word it was not had (its refusal, timeout, unreachable)."""
        try:
            return await asyncio.wait_for(self._ask(holder, type, payload), self.offer_timeout_s)
        except PeerRejected as exc:
            return exc.reason
        except TimeoutError:
            return "timeout"
        except PeerError:
            return "unreachable"

    # ------------------------------------------------------------ holder receptors

    def accept_local(self, tx: Tx, view: str, taken: Iterable[Acceptance] = ()) -> Acceptance:
        if view and view != self.view:
            self.counters["pay_refused:view_mismatch"] += 1
            raise RequestError("view_mismatch", f"this holder's member view is {self.view}, not {view}", 409)
        self._holders(tx.account)
        self.check_sealed(tx.account, tx.seq)
        try:
            return self.ledger.accept(tx, self.clock.now_ms(), taken)
        except LedgerError as exc:
            raise self._refuse(exc) from None

    @receptor("pay.accept")
    async def _r_accept(self, env: envelope.Envelope) -> Any:
        return self.vote_ready(*await self.ready_offer(env.payload, env.signer))

    async def ready_offer(self, payload: Any, signer: str) -> tuple[Tx, str, list[Acceptance]]:
        """What must happen before a vote on an offer, which may wait on other nodes: the view caught
        up, the work of a reward checked, the account handed over (`ready_to_vote`). (tx, view, taken)."""
        tx = self._tx(payload)
        view = payload.get("view", "")
        if not isinstance(view, str):
            raise RequestError("malformed", "view is the digest of the member view")
        if view and view != self.view:
            await self.refresh_view()  # the offerer may have read the root's table a moment sooner
        if view and view != self.view:  # or knows evidence against a holder that we lack
            await self.reconcile_exclusions(payload.get("excluded"), signer)
        await self.ready_to_vote(tx, view, payload.get("work"))
        return tx, view, _taken(payload.get("taken"))

    def vote_ready(self, tx: Tx, view: str, taken: list[Acceptance]) -> dict[str, Any]:
        """The vote on an offer made ready (`ready_offer`), durable before it is returned."""
        acc = self.accept_local(tx, view, taken)
        self.counters["pay_accepted"] += 1
        return {"acceptance": acc.to_dict()}

    async def ready_to_vote(self, tx: Tx, view: str, work: Any) -> None:
        """A reward's work checked (a non-holder refuses unaudited), the account handed over from its
        previous holder sets (`handover.py`)."""
        if work is not None and tx.kind == "reward" and self.ledger.holder.holds(tx.account):
            await self.check_work(tx, work)
        await self.handed_over(view, lambda: self.hand_over(tx))

    async def vote(self, tx: Tx, view: str, work: Any, taken: Iterable[Acceptance] = ()) -> Acceptance:
        """This holder's vote on `tx`, offered under `view`: `ready_to_vote`, then the core's rules
        (`taken`: other holders' votes for it, for one past its age)."""
        await self.ready_to_vote(tx, view, work)
        return self.accept_local(tx, view, taken)

    def confirm_local(self, cert: Certificate) -> list[str]:
        self._holders(cert.tx.account)
        try:
            with self.ledger.one_commit():  # its confirm and its credit: one fsync
                events = self.ledger.on_certificate(cert)
        except ConflictingSpend as exc:  # raised only once `cert` was checked: a second certificate
            self._second_certificate(cert)
            raise self._refuse(exc) from None
        except LedgerError as exc:
            raise self._refuse(exc) from None
        self._witness(cert)
        names = {Accepted: "accepted", Confirmed: "confirmed", Credited: "credited"}
        return [names[type(e)] + ("" if e.new else ":again") for e in events]

    @receptor("pay.confirm")
    async def _r_confirm(self, env: envelope.Envelope) -> Any:
        """A certificate, or a skip where a certificate would stand (`skipping.py`)."""
        doc = env.payload.get("cert") if isinstance(env.payload, dict) else None
        settled, events = self.take_local(doc)
        self.counters["pay_certificates"] += 1
        return {"id": settled, "events": events}

    def certs_local(self, account: str, start: int, end: int) -> list[dict[str, Any]]:
        """This holder's certificates (and skips) of `account`'s entries start..end-1 (those it has, in order)."""
        chain = self.ledger.holder.state.chains.get(account)
        if chain is None:
            return []
        entries = chain.entries[max(0, start - 1) : max(0, min(end - 1, start - 1 + MAX_CATCH_UP))]
        out: list[dict[str, Any]] = []
        for e in entries:
            proof = e.cert if e.cert is not None else e.skip
            if proof is not None:
                out.append(proof.to_dict())
        return out

    @receptor("pay.certs")
    async def _r_certs(self, env: envelope.Envelope) -> Any:
        """Certificates of an account's chain, for a holder that missed some (``gap``) to catch up."""
        account = self._account(env.payload)
        start, end = env.payload.get("from"), env.payload.get("to")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (start, end)):
            raise RequestError("malformed", "from and to are sequence numbers")
        return {"certs": self.certs_local(account, start, end)}

    async def _catch_up(self, holder: str, account: str, seq: int) -> bool:
        """Bring a holder that refused for a ``gap`` up to seq - 1: the certificates it lacks, in order,
        from this node's chain or from another holder's. True when it took them all."""
        got = await self._answers(account, [holder])
        doc = got[holder]
        start = doc["seq"] + 1 if isinstance(doc, dict) and isinstance(doc.get("seq"), int) else 1
        if seq - start > MAX_CATCH_UP:
            return False
        certs = self.certs_local(account, start, seq)
        if len(certs) < seq - start:
            for other in self.sets.of(account):
                if other in (holder, self.key.public_key_hex):
                    continue
                reply = await self._bounded(other, "pay.certs", {"account": account, "from": start, "to": seq})
                found = reply.get("certs") if isinstance(reply, dict) else None
                if isinstance(found, list) and len(found) == seq - start:
                    certs = found
                    break
            else:
                return False
        self.counters["pay_catch_ups"] += 1
        for cert in certs:
            said = await self._hand_cert(holder, cert)
            if said == "unknown_set":  # of a set the holder no longer knows: signed again for today's set
                again = await self.recertified(cert)
                said = await self._hand_cert(holder, again) if again is not None else said
            if said != "ok":
                return False
        return True

    async def _hand_cert(self, holder: str, cert: dict[str, Any]) -> str:
        """A certificate (or skip) to one holder (this one: taken locally): "ok" or its refusal reason."""
        if holder == self.key.public_key_hex:
            try:
                self.take_local(cert)
            except RequestError as exc:
                return exc.reason
            return "ok"
        got = await self._bounded(holder, "pay.confirm", {"cert": cert})
        return got if isinstance(got, str) else "ok"

    # ------------------------------------------------------------ entry receptors

    async def ask_vote(
        self, holder: str, tx: Tx, work: Any = None, taken: Sequence[Acceptance] = ()
    ) -> Acceptance | str:
        """One holder's acceptance of `tx` for the account's set in this view (this holder: its own vote),
        checked to be that holder's for that transaction and set, or the reason there is none; `work`, a
        reward's work record, and `taken`, other holders' votes for it, travel with the offer."""
        if holder == self.key.public_key_hex:
            try:
                return await self.vote(tx, self.view, work, taken)
            except RequestError as exc:
                return exc.reason
        offer: dict[str, Any] = {"tx": tx.to_dict(), "view": self.view, "excluded": self.excluded_keys()}
        if work is not None:
            offer["work"] = work
        if taken:
            offer["taken"] = [a.to_dict() for a in taken[:MAX_TAKEN]]
        digest = self.sets.digest(tx.account)
        if work is None:  # with others to this holder (bundles.py); a reward's, whose work is checked, alone
            got = await self.bundled(self.offers, holder, offer)
        else:
            got = await self._bounded(holder, "pay.accept", offer)
        if isinstance(got, str):
            return got
        try:
            acc = check_acceptance(got.get("acceptance"))
        except LedgerError:
            return "bad_reply"
        if (acc.holder, acc.id, acc.account, acc.seq, acc.set_id) != (holder, tx.id, tx.account, tx.seq, digest):
            return "bad_reply"
        return acc

    async def _offer(self, tx: Tx, holders: Iterable[str], work: Any = None) -> dict[str, Acceptance | str]:
        """Offer `tx` to its holders; `work`, a reward's work record, travels with it."""
        hs = list(holders)
        got = await asyncio.gather(*(self.ask_vote(h, tx, work) for h in hs))
        answers: dict[str, Acceptance | str] = dict(zip(hs, got, strict=True))
        lagging = [h for h, a in answers.items() if a == "gap"]
        if lagging:  # a holder that missed earlier certificates: send them, then offer again
            caught = await asyncio.gather(*(self._catch_up(h, tx.account, tx.seq) for h in lagging))
            again = [h for h, ok in zip(lagging, caught, strict=True) if ok]
            answers.update(zip(again, await asyncio.gather(*(self.ask_vote(h, tx, work) for h in again)), strict=True))
        stale = [h for h, a in answers.items() if a == "stale"]
        taken = [a for a in answers.values() if isinstance(a, Acceptance)]
        if stale and len(taken) > self.faulty:  # sent again after a long absence: its voters vouch for its age
            votes = await asyncio.gather(*(self.ask_vote(h, tx, work, taken) for h in stale))
            answers.update(zip(stale, votes, strict=True))
        return answers

    async def deliver(
        self, doc: dict[str, Any], account: str, seq: int, targets: list[str], local: Callable[[], Any]
    ) -> dict[str, str]:
        """A certificate or a skip (`doc`, of account:seq) to each of `targets` in ``pay.confirm``, a
        holder that lacks earlier entries caught up first; this holder takes it by `local()`.
        Each target's "ok" or refusal reason."""

        async def one(holder: str) -> str:
            if holder == self.key.public_key_hex:
                try:
                    local()
                    return "ok"
                except RequestError as exc:
                    return exc.reason
            got = await self.bundled(self.certs, holder, doc)
            if got == "gap" and await self._catch_up(holder, account, seq):
                got = await self.bundled(self.certs, holder, doc)
            return got if isinstance(got, str) else "ok"

        return dict(zip(targets, await asyncio.gather(*(one(h) for h in targets)), strict=True))

    async def _deliver_cert(self, cert: Certificate) -> dict[str, Any]:
        """The certificate to every holder of the payer and of the payee (one request each)."""
        payee = () if cert.tx.kind == "htlc-lock" else self.sets.of(cert.tx.to)  # a lock credits nobody
        targets = list(dict.fromkeys([*self.sets.of(cert.tx.account), *payee]))
        tx = cert.tx
        results = await self.deliver(cert.to_dict(), tx.account, tx.seq, targets, lambda: self.confirm_local(cert))
        refused = {h[:16]: r for h, r in results.items() if r != "ok"}
        if refused:
            self.counters["pay_delivery_incomplete"] += 1
        return {"delivered": len(targets) - len(refused), "of": len(targets), "refused": refused}

    @receptor("pay.send")
    async def _r_send(self, env: envelope.Envelope) -> Any:
        tx = self._tx(env.payload)
        self.know(tx.account, tx.to)  # payers and payees can be found by address (`directory`)
        work = env.payload.get("work")
        if tx.kind != "reward" or work is None:  # the test-only funding path is not sequenced
            return await self._send(tx, work)
        first = min(self._holders(tx.account)[0])  # the reserve's sequencer: earn.py, "one offer at a time"
        if first != self.key.public_key_hex and env.payload.get("forwarded") is not True:
            return await self.holds.forward(self._ask(first, "pay.send", {**env.payload, "forwarded": True}))
        async with self.holds.one_reward:
            try:
                return await self._send(tx, work)
            except RequestError as exc:  # a split seq? the votes there tell (skipping.py)
                if exc.reason not in SPLIT_SIGNS or not await self.skip_split(tx.account, tx.seq):
                    raise
            raise RequestError(
                "skipped",
                f"the reserve's seq {tx.seq} had split votes that no claim could make a quorum of; "
                f"it is skipped: claim again at {tx.seq + 1}",
                409,
            )

    async def _send(self, tx: Tx, work: Any) -> dict[str, Any]:
        """Offer, certify, deliver: what ``pay.send`` does."""
        holders, q = self._holders(tx.account)
        answers = await self._offer(tx, holders, work)
        if "view_mismatch" in answers.values() and sum(isinstance(a, Acceptance) for a in answers.values()) < q:
            await self.ask_refusers(answers)  # evidence against a holder that they know and we do not
            await self.refresh_view()  # one more try on the root's latest table
            holders, q = self._holders(tx.account)
            answers = await self._offer(tx, holders, work)
        accs = [a for a in answers.values() if isinstance(a, Acceptance)]
        if len(accs) < q:
            self.counters["pay_send_refused"] += 1
            raise self._no_quorum(tx, answers, q)
        cert = check_certificate(certify(tx, accs, set_digest(holders)), holders, q)
        self._witness(cert)
        delivery = await self._deliver_cert(cert)
        self.counters["pay_sent"] += 1
        return {
            "id": tx.id,
            "account": tx.account,
            "seq": tx.seq,
            "to": tx.to,
            "amount": tx.amount,
            "kind": tx.kind,
            "certificate": {"signers": list(cert.signers), "quorum": q, "holders": len(holders)},
            "cert": cert.to_dict(),
            **delivery,
        }

    def _no_quorum(self, tx: Tx, answers: dict[str, Acceptance | str], q: int) -> RequestError:
        """The refusal of a send that no quorum accepted: the holders' own reason when they gave one."""
        refusals = {h: a for h, a in answers.items() if isinstance(a, str)}
        accepted = len(answers) - len(refusals)
        known = (*REASONS, *WORK_REASONS, *SERVE_REASONS, *TASK_REASONS, *CONTENT_REASONS, *BRIDGE_REASONS)
        ledger = Counter(r for r in refusals.values() if r in known)  # not timeouts, views
        reason, status = "no_quorum", 503
        if ledger:
            reason = ledger.most_common(1)[0][0]
            status = _STATUS.get(reason, 400)
        elif refusals and set(refusals.values()) <= {"view_mismatch"}:
            reason, status = "view_mismatch", 409
        said = ", ".join(f"{h[:8]}: {r}" for h, r in sorted(refusals.items()))
        detail = f"{accepted} of {len(answers)} holders accepted {tx.id[:16]}, {q} needed ({said})"
        if reason == "conflicting_spend":
            local = self.ledger.holder.state.votes.get((tx.account, tx.seq))
            if local is not None and local.id != tx.id:
                detail = f"{tx.seq} was already spent by {local.id}; " + detail
        return RequestError(reason, detail, status)

    # ------------------------------------------------------------ monitoring

    def status(self) -> dict[str, Any]:
        doc = super().status()
        st = self.ledger.holder.state
        doc["pay"] = {
            "db": str(self.db_path),
            "view": self.view,
            "members": len(self.members),
            "r": self.r,
            "faulty": self.faulty,
            "quorum": quorum_size(self.r, self.faulty),
            "accounts": len(st.chains),
            "votes": len(st.votes),
            "credits": len(st.credits),
            "test_only_work": bool(self.test_only_work_ref),
            "evidence": self.evidence_status(),
            "skips": sum(e.skip is not None for c in st.chains.values() for e in c.entries),
            "directory": len(self.directory),
            "bundles": {  # requests sent and the offers or certificates they carried (bundles.py)
                "offers": {"requests": self.offers.requests, "items": self.offers.calls},
                "certs": {"requests": self.certs.requests, "items": self.certs.calls},
            },
            "htlc": {
                "votes": len(st.res_votes),
                "resolved": len(st.resolved),
                "grace_ms": self.ledger.holder.htlc_grace_ms,
            },
        }
        return doc
