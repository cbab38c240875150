"""peerPaysCell's side of moving an account's settled history to its new holders (the rule:
`borgusb.ledger.handoff`).

* **Pushing.** When this cell's member view changes, every account it held under the old view whose
  set the new view changes is handed over to each holder the new view adds: the chain's certificates
  and skips in order, the certificates that credited the account, and the certified resolutions of
  its locks and of locks it was paid by, `MAX_DOCS` of each kind per ``pay.handoff``, `CONCURRENCY`
  at a time, in the background. A newcomer that cannot take it yet (it has not read the new view,
  or not learned the recent ones) is asked again every `RETRY_S` for `PATIENCE_S`.
* **Taking.** ``pay.handoff`` is taken only from a holder of the account in a set this cell knows for
  it (today's, or one of the last window's), and only by a holder of the account today. Each record
  is taken as a delivery would be; one whose holder set this cell cannot check (``unknown_set``, or a
  skip of another set) is taken once ``faulty + 1`` holders of one known set handed it over
  (`Vouches`). The reply counts what was taken, what waits for more vouchers or earlier entries, and
  what was refused, by reason.
* **Filling.** An entry settled here by a later certificate has no certificate of its own; before the
  push, each one gets one (`fill_proofs`): assembled from the votes the account's holders keep, else
  signed again for today's set. Without it the chain handed over would stop before that entry.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ... import envelope
from ...ledger.certificate import (
    Acceptance,
    Certificate,
    HolderSets,
    certificate_from_dict,
    certify,
    check_certificate,
    check_known,
    set_digest,
)
from ...ledger.durable import DurableHolder
from ...ledger.errors import LedgerError, Malformed
from ...ledger.handoff import Vouches
from ...ledger.htlc import ResolutionCertificate, resolution_certificate_from_dict
from ...ledger.skip import Skip, is_skip_doc, skip_from_dict
from ...ledger.tx import Tx
from ..kit import RequestError, receptor
from ..kit.holdercell import HolderCell

MAX_DOCS = 32  # records of each kind in one pay.handoff
MAX_CATCH_UP = 64  # certificates at once: a lagging holder's catch-up, one part of `certs_local`
MAX_FILL = 64  # entries without their own certificate given one per account before a hand-over
CONCURRENCY = 4  # hand-overs in flight at once
YIELD_EVERY = 64  # accounts whose sets are computed between two turns of the event loop
RETRY_S = 2.0  # a newcomer that is not there yet (its view, the views it learns at start) is asked again
PATIENCE_S = 120.0  # for this long: well inside the handover window, which its known sets need
KINDS = ("chain", "credits", "settled")
NOT_YET = frozenset(("not_holder", "not_a_holder", "too_few_members", "timeout", "unreachable", "rate_limited"))
VOUCHABLE = frozenset(("unknown_set", "not_holder_signer", "not_skippable"))  # a set this holder cannot check


class HandoffReceptors(HolderCell):
    """``pay.handoff`` and the push after a view change (see the module docstring)."""

    if TYPE_CHECKING:
        ledger: DurableHolder
        r: int
        faulty: int
        view: str

        @property
        def sets(self) -> HolderSets: ...
        def _holders(self, account: str) -> tuple[tuple[str, ...], int]: ...
        def _refuse(self, exc: LedgerError) -> RequestError: ...
        @staticmethod
        def _account(payload: Any) -> str: ...
        def confirm_local(self, cert: Certificate) -> list[str]: ...
        def skip_local(self, skip: Skip) -> str: ...
        def settle_local(self, cert: ResolutionCertificate) -> list[str]: ...
        def certs_local(self, account: str, start: int, end: int) -> list[dict[str, Any]]: ...
        async def _bounded(self, holder: str, type: str, payload: dict[str, Any]) -> dict[str, Any] | str: ...
        async def ask_vote(self, holder: str, tx: Tx, work: Any = None) -> Acceptance | str: ...
        async def _vote_of(self, holder: str, account: str, seq: int) -> Acceptance | None: ...

    def _init_handoff(self) -> None:
        self.vouches = Vouches(self.faulty)

    # ------------------------------------------------------------ pushing (an old holder)

    def hand_off(self, before: HolderSets) -> None:
        """After a view change from `before`: hand each account this cell held then to the holders
        the new view adds, in the background."""
        if len(before.members) >= self.r and len(self.sets.members) >= self.r and self.ledger.holder.state.chains:
            self._spawn(self._push_all(before, self.sets))

    async def _push_all(self, before: HolderSets, after: HolderSets) -> None:
        me = self.key.public_key_hex
        jobs: list[tuple[str, str]] = []
        for i, account in enumerate(list(self.ledger.holder.state.chains)):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # two lotteries per account: the event loop keeps serving meanwhile
            old = before.of(account)
            if me in old:
                jobs += [(h, account) for h in after.of(account) if h not in old]
        gate = asyncio.Semaphore(CONCURRENCY)
        for account in dict.fromkeys(account for _, account in jobs):
            await self.fill_proofs(account)  # an entry without its own certificate would stop the chain there
        settled = self._settled_by_account({account for _, account in jobs})

        async def one(holder: str, account: str) -> None:
            async with gate:
                await self._push(holder, account, settled.get(account, []))

        await asyncio.gather(*(one(h, a) for h, a in jobs))

    async def _push(self, holder: str, account: str, settled: list[dict[str, Any]]) -> None:
        history = {"chain": self._chain(account), "credits": self._credits(account), "settled": settled}
        pages = max(1, *((len(docs) + MAX_DOCS - 1) // MAX_DOCS for docs in history.values()))
        loop = asyncio.get_running_loop()
        give_up = loop.time() + PATIENCE_S
        for page in range(pages):
            payload = {
                "account": account,
                **{k: v[page * MAX_DOCS : (page + 1) * MAX_DOCS] for k, v in history.items()},
            }
            while True:
                got = await self._bounded(holder, "pay.handoff", payload)
                if isinstance(got, dict) or got not in NOT_YET or loop.time() > give_up:
                    break
                self.counters["pay_handoff_retried"] += 1
                await asyncio.sleep(RETRY_S)
            self.counters["pay_handoff_sent" if isinstance(got, dict) else f"pay_handoff_failed:{got}"] += 1

    def _chain(self, account: str) -> list[dict[str, Any]]:
        """The proofs (certificates, skips) of the account's chain, in order (`certs_local` gives a part)."""
        chain = self.ledger.holder.state.chains.get(account)
        n = len(chain.entries) if chain else 0
        return [doc for start in range(1, n + 1, MAX_CATCH_UP) for doc in self.certs_local(account, start, n + 1)]

    def _credits(self, account: str) -> list[dict[str, Any]]:
        rows = self.ledger.store.db.execute("SELECT cert FROM credits WHERE account = ? ORDER BY rowid", (account,))
        return [json.loads(c) for (c,) in rows]

    def _settled_by_account(self, accounts: set[str]) -> dict[str, list[dict[str, Any]]]:
        """The certified resolutions this cell keeps, by the lock payer and by the beneficiary."""
        out: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        rows = self.ledger.store.db.execute("SELECT account, cert FROM htlc_settled ORDER BY rowid")
        for beneficiary, doc in rows:
            cert = json.loads(doc)
            payer = cert["resolution"]["lock"]["account"]
            for account in dict.fromkeys((payer, beneficiary)):
                if account in accounts:
                    out[account].append(cert)
        return out

    async def recertified(self, doc: Any) -> dict[str, Any] | None:
        """A certificate of a set no longer known (`unknown_set` at a lagging holder), signed again for
        today's set (`resigned`), or None. It lets a holder catch up across a view change older than the
        handover window."""
        if is_skip_doc(doc):
            return None
        try:
            tx = certificate_from_dict(doc).tx
        except LedgerError:
            return None
        cert = await self.resigned(tx)
        return cert.to_dict() if cert is not None else None

    async def resigned(self, tx: Tx) -> Certificate | None:
        """`tx`'s certificate signed again for today's set by the holders that have it settled (a holder
        signs a settled entry's id again, never another: `Holder.decide_accept`), or None if fewer than a
        quorum of today's set do."""
        holders, q = self._holders(tx.account)
        digest = set_digest(holders)
        answers = await asyncio.gather(*(self.ask_vote(h, tx) for h in holders))
        accs = [a for a in answers if isinstance(a, Acceptance)]
        try:
            cert = check_certificate(certify(tx, accs, digest), holders, q)
        except LedgerError:
            return None
        self.counters["pay_recertified"] += 1
        return cert

    async def fill_proofs(self, account: str) -> int:
        """A certificate for each of this holder's settled entries that has none of its own (settled by a
        later certificate, whose chain names it): assembled from the votes the account's holders keep
        (`assembled`), else signed again for today's set (`resigned`). Without it the chain's hand-over
        and catch-up (`certs_local`) stop before that entry. Returns how many entries got one."""
        chain = self.ledger.holder.state.chains.get(account)
        if chain is None:
            return 0
        bare = [e.tx for e in chain.entries[: chain.confirmed] if e.cert is None and e.skip is None]
        filled = 0
        for tx in bare[:MAX_FILL]:
            cert = await self.assembled(tx) or await self.resigned(tx)
            if cert is None:
                self.counters["pay_proof_missing"] += 1
                break  # the entries after it cannot be handed over before it anyway
            try:
                self.confirm_local(cert)
            except RequestError:
                break
            filled += 1
            self.counters["pay_proofs_filled"] += 1
        return filled

    async def assembled(self, tx: Tx) -> Certificate | None:
        """`tx`'s certificate from the votes its account's holders keep (``pay.vote``), of one set this
        holder knows with a quorum of them, or None: nobody signs anything new."""
        holders = dict.fromkeys(h for s in self.sets.known_sets(tx.account) for h in s)
        votes = await asyncio.gather(*(self._vote_of(h, tx.account, tx.seq) for h in holders))
        accs = [a for a in votes if a is not None and a.id == tx.id]
        for set_id in dict.fromkeys(a.set_id for a in accs):
            try:
                return check_known(certify(tx, accs, set_id), self.sets)
            except LedgerError:
                continue
        return None

    # ------------------------------------------------------------ taking (a new holder)

    @receptor("pay.handoff")
    async def _r_handoff(self, env: envelope.Envelope) -> Any:
        """An account's settled history from one of its holders (see the module docstring)."""
        account = self._account(env.payload)
        docs = {k: env.payload.get(k, []) for k in KINDS}
        if not all(isinstance(v, list) and len(v) <= MAX_DOCS for v in docs.values()):
            raise RequestError("malformed", f"chain, credits and settled are lists of at most {MAX_DOCS}")
        self._holders(account)
        if not self.ledger.holder.holds(account):
            self.counters["pay_handoff_refused:not_holder"] += 1
            raise RequestError("not_holder", "a hand-over goes to a holder of the account", 403)
        sets = self.sets.known_sets(account)
        if not any(env.signer in s for s in sets):
            self.counters["pay_handoff_refused:not_a_holder"] += 1
            raise RequestError("not_a_holder", "a hand-over comes from a holder of the account in a known set", 403)
        outcome: Counter[str] = Counter()
        for kind in KINDS:
            for doc in docs[kind]:
                outcome[self._take_handed(env.signer, account, kind, doc, sets)] += 1
        for what, n in outcome.items():
            self.counters[f"pay_handoff:{what}"] += n
        return {"outcome": dict(outcome)}

    def _take_handed(self, voucher: str, account: str, kind: str, doc: Any, sets: list[tuple[str, ...]]) -> str:
        """Take one handed-over record: "taken", "again" (had it), "waiting" or a refusal reason."""
        try:
            record, take, vouched = self._handed_record(account, kind, doc)
        except LedgerError as exc:
            return exc.reason
        ready = self.vouches.vouch(f"{account}:{kind}:{record}", voucher, sets)
        try:
            done = take()
        except RequestError as exc:
            if exc.reason not in VOUCHABLE:
                return "waiting" if exc.reason == "gap" else exc.reason
            if not ready:
                return "waiting"
            try:
                done = vouched()
            except LedgerError as err:
                return "waiting" if err.reason == "gap" else err.reason
        self.vouches.done(f"{account}:{kind}:{record}")
        return "taken" if done else "again"

    def _handed_record(self, account: str, kind: str, doc: Any) -> tuple[str, Callable[[], bool], Callable[[], bool]]:
        """(record id, take it as a delivery, take it vouched for) of one handed-over document, parsed
        (the payer's signature checked) and shown to be about `account` (`Malformed` otherwise)."""
        if kind == "settled":
            rc = resolution_certificate_from_dict(doc)
            res = rc.resolution
            if account not in (res.lock.account, res.beneficiary):
                raise _not_about(account)
            return (
                res.id,
                lambda: self.settle_local(rc) != ["again"],
                lambda: self.ledger.settle(rc, vouched=True).new,
            )
        if kind == "chain" and is_skip_doc(doc):
            skip = skip_from_dict(doc)
            if skip.account != account:
                raise _not_about(account)
            return skip.id, lambda: _fresh([self.skip_local(skip)]), lambda: self.ledger.skip(skip, vouched=True).new
        cert = certificate_from_dict(doc)
        tx = cert.tx
        if (tx.account if kind == "chain" else tx.to) != account or (kind == "credits" and tx.kind == "htlc-lock"):
            raise _not_about(account)
        return (
            tx.id,
            lambda: _fresh(self.confirm_local(cert)),
            lambda: any(e.new for e in self.ledger.on_certificate(cert, vouched=True)),
        )


def _fresh(events: list[str]) -> bool:
    return any(not e.endswith(":again") and e != "again" for e in events)


def _not_about(account: str) -> LedgerError:
    return Malformed(f"a handed-over record of {account[:16]} is about another account")
