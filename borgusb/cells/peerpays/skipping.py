"""peerPaysCell's way past a split seq: proven from the votes already signed, then skipped.

The protocol is `borgusb.ledger.skip` (docs/ledger.md, "Skipping a split seq"); this mixin
carries it:

* **Asked**: ``pay.vote {account, seq}`` answers this holder's signed acceptance at that slot
  (``no_vote`` when it has none) and the transaction it voted for (``tx``, unsettled.py), when its
  chain has it. A vote is no secret: certificates carry them anyway.
* **Proven** by the reserve's sequencer, when a reward claim it offers is refused for a seq
  already taken (``conflicting_spend``) or gathers no quorum: it asks every holder of the
  account for its vote there and, if those votes leave every transaction short of the quorum
  (the holders that did not answer and the tolerated liars counted on its side), it has a skip.
  Otherwise nothing happens and the claim's refusal stands.
* **Settled**: the skip goes to every holder in a ``pay.confirm`` (``{"cert": skip}``: a skip
  stands where a certificate would); each holder checks it against its own holder set. A holder
  lacking earlier certificates is caught up first, and catch-up (``pay.certs``) carries skips
  in their place in the chain.
* The claimant is told ``skipped`` and claims again at the next seq (its retry reasons).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ... import envelope
from ...ledger.certificate import Acceptance, Certificate, HolderSets, certificate_from_dict, check_acceptance
from ...ledger.durable import DurableHolder
from ...ledger.errors import LedgerError
from ...ledger.skip import Skip, check_skip, gather_skip, is_skip_doc, skip_from_dict
from ...ledger.tx import ZERO_HASH, Tx, check_tx
from ..kit import RequestError, receptor
from ..kit.holdercell import HolderCell

log = logging.getLogger("borgusb.peerpays")

SPLIT_SIGNS = frozenset({"conflicting_spend", "no_quorum"})  # a sequencer's refusals worth a look at the votes


class SkipReceptors(HolderCell):
    """Votes answered, skips proven and taken (see the module docstring)."""

    if TYPE_CHECKING:
        ledger: DurableHolder

        @property
        def sets(self) -> HolderSets: ...
        def _holders(self, account: str) -> tuple[tuple[str, ...], int]: ...
        def _refuse(self, exc: LedgerError) -> RequestError: ...
        @staticmethod
        def _account(payload: Any) -> str: ...
        def confirm_local(self, cert: Certificate) -> list[str]: ...
        async def deliver(
            self, doc: dict[str, Any], account: str, seq: int, targets: list[str], local: Callable[[], Any]
        ) -> dict[str, str]: ...
        async def _bounded(self, holder: str, type: str, payload: dict[str, Any]) -> dict[str, Any] | str: ...

    # ------------------------------------------------------------ a holder's side

    def skip_local(self, skip: Skip) -> str:
        """Take a skip as this holder (checked against its own holder set), durable first."""
        self._holders(skip.account)
        try:
            event = self.ledger.skip(skip)
        except LedgerError as exc:
            raise self._refuse(exc) from None
        if event.new:
            self.counters["pay_skips_taken"] += 1
            log.info("skipped %s:%d (split votes, no quorum possible)", skip.account[:16], skip.seq)
        return "skipped" if event.new else "skipped:again"

    def take_local(self, doc: Any) -> tuple[str, list[str]]:
        """A certificate or a skip, as a holder takes either: (its id, what it did)."""
        try:
            if is_skip_doc(doc):
                skip = skip_from_dict(doc)
                return skip.id, [self.skip_local(skip)]
            cert = certificate_from_dict(doc)
        except LedgerError as exc:
            raise self._refuse(exc) from None
        return cert.tx.id, self.confirm_local(cert)

    @receptor("pay.vote")
    async def _r_vote(self, env: envelope.Envelope) -> Any:
        """This holder's acceptance at one (account, seq), for a sequencer proving a split."""
        account = self._account(env.payload)
        seq = env.payload.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise RequestError("malformed", "seq is a positive integer")
        vote = self.ledger.holder.state.votes.get((account, seq))
        if vote is None:
            raise RequestError("no_vote", f"this holder has no vote at {account[:16]}:{seq}", 404)
        reply: dict[str, Any] = {"acceptance": vote.to_dict()}
        tx = self.voted_tx_local(account, seq)
        if tx is not None:  # for a wallet that lost its copy (unsettled.py)
            reply["tx"] = tx.to_dict()
        return reply

    # ------------------------------------------------------------ the sequencer's side

    def voted_tx_local(self, account: str, seq: int) -> Tx | None:
        """The transaction this holder voted for at (account, seq), while its chain has it there."""
        vote = self.ledger.holder.state.votes.get((account, seq))
        chain = self.ledger.holder.state.chains.get(account)
        if vote is None or chain is None or not 1 <= seq <= len(chain.entries):
            return None
        tx = chain.entries[seq - 1].tx
        return tx if tx.id == vote.id else None

    async def _vote_of(self, holder: str, account: str, seq: int) -> Acceptance | None:
        found = await self.vote_and_tx(holder, account, seq)
        return found[0] if found is not None else None

    async def vote_and_tx(self, holder: str, account: str, seq: int) -> tuple[Acceptance, Tx | None] | None:
        """`holder`'s vote at (account, seq), its signature and slot checked, and the transaction it voted
        for when the answer carries one that checks (payer-signed, the id the vote names; else None,
        counted: unsettled.py relies on it)."""
        if holder == self.key.public_key_hex:
            vote = self.ledger.holder.state.votes.get((account, seq))
            return (vote, self.voted_tx_local(account, seq)) if vote is not None else None
        got = await self._bounded(holder, "pay.vote", {"account": account, "seq": seq})
        if not isinstance(got, dict):
            return None
        try:
            acc = check_acceptance(got.get("acceptance"))
        except LedgerError:
            self.counters["pay_skip_bad_vote"] += 1
            return None
        if (acc.holder, acc.account, acc.seq) != (holder, account, seq):
            return None
        if "tx" not in got:
            return acc, None
        try:
            tx: Tx | None = check_tx(got["tx"])
        except LedgerError:
            tx = None
        if tx is None or tx.id != acc.id:
            self.counters["pay_unsettled_bad_vote"] += 1
            return acc, None
        return acc, tx

    async def skip_split(self, account: str, seq: int) -> bool:
        """Prove from the holders' votes that no transaction can be certified at (account, seq) and
        have them skip it. True once a quorum of the holders took the skip."""
        chain = self.ledger.holder.state.chains.get(account)
        if chain is None or seq - 1 > chain.confirmed or seq <= chain.confirmed:
            return False  # the entry before is not settled here, or this seq already is
        prev = chain.entries[seq - 2].tx.id if seq > 1 else ZERO_HASH
        holders, q = self._holders(account)
        found = await asyncio.gather(*(self._vote_of(h, account, seq) for h in holders))
        votes = [a for a in found if a is not None]
        if not votes:
            return False
        skip = gather_skip(account, seq, prev, votes)
        try:
            check_skip(skip, holders, q, self.sets.faulty)
        except LedgerError:
            self.counters["pay_skip_not_proven"] += 1
            return False
        self.counters["pay_skips_proven"] += 1
        took = await self._deliver_skip(skip, holders)
        n = len(holders)
        log.info("skip of %s:%d proven by %d votes; %d of %d holders took it", account[:16], seq, len(votes), took, n)
        return took >= q

    async def _deliver_skip(self, skip: Skip, holders: tuple[str, ...]) -> int:
        """The skip to every holder of the account (as a certificate goes): how many took it."""
        got = await self.deliver(skip.to_dict(), skip.account, skip.seq, list(holders), lambda: self.skip_local(skip))
        return sum(r == "ok" for r in got.values())
