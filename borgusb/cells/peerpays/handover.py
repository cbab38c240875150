"""peerPaysCell's side of the membership handover (the rule is `borgusb.ledger.handover`).

* **Past views.** When the member view changes, the one that ended is kept (`PastView`: its members
  with their addresses, its digest, when it ended) for `handover.WINDOW_MS`, at most `MAX_VIEWS`.
* **Asking.** Before this holder votes on a transaction at a seq where it has no vote yet, every
  holder set of the account under those past views that differs from today's is asked
  (``pay.handover``, in parallel) for its votes from that seq on, and to seal the account.
  `handover.judge` decides: a vote of theirs for another transaction there refuses this one
  (``conflicting_spend``), too few sealed answers is ``handover_pending`` (503). A complete
  handover is remembered per (account, old set) while the window lasts, so one round covers every
  later seq of the account (the sealed holders vote at those seqs under no other set).
* **Answering and sealing.** ``pay.handover`` is answered only to a member of this holder's view,
  under the same view digest (read again once if it differs: ``view_mismatch`` otherwise). The
  holder records the seal: from that seq on, it votes on the account only while its holder set is
  the one it had when it sealed (`check_sealed`, ``handover_pending`` otherwise), until a later
  handover seals it again, or until it hands the account over itself from the sealed set (a holder
  sealed to a set it later leaves for one it joins). Seals are kept for the window, at most
  `MAX_SEALED` accounts.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from ... import envelope
from ...clock import Clock
from ...ledger.certificate import Acceptance, HolderSets, check_acceptance
from ...ledger.errors import LedgerError
from ...ledger.handover import MAX_VOTES, WINDOW_MS, Answer, PastView, judge, old_sets, wanted
from ...ledger.store import DurableHolder
from ...ledger.tx import Tx
from ..kit import RequestError, receptor
from ..kit.holdercell import HolderCell

MAX_VIEWS = 64
MAX_SEALED = 65_536
MAX_HANDED = 65_536


class HandoverReceptors(HolderCell):
    """Past views, ``pay.handover`` and the check before a vote (see the module docstring)."""

    if TYPE_CHECKING:
        ledger: DurableHolder
        members: dict[str, str]
        table: dict[str, str]
        excluded: dict[str, Any]
        view: str
        r: int
        faulty: int
        clock: Clock

        @property
        def sets(self) -> HolderSets: ...
        def _holders(self, account: str) -> tuple[tuple[str, ...], int]: ...
        def _refuse(self, exc: LedgerError) -> RequestError: ...
        @staticmethod
        def _account(payload: Any) -> str: ...
        async def refresh_view(self) -> bool: ...
        async def _bounded(self, holder: str, type: str, payload: dict[str, Any]) -> dict[str, Any] | str: ...

    def _init_handover(self) -> None:
        self.past_views: deque[PastView] = deque(maxlen=MAX_VIEWS)
        self.sealed: OrderedDict[str, tuple[frozenset[str], int, int]] = OrderedDict()  # -> (set, from seq, until)
        self.handed: OrderedDict[tuple[str, tuple[str, ...]], tuple[int, int, tuple[Answer, ...]]] = OrderedDict()

    def view_ended(self, members: dict[str, str], digest: str) -> None:
        """Keep the view that just ended (its sets may hold votes in flight for `WINDOW_MS`)."""
        self.past_views.append(PastView(digest, dict(members), self.clock.now_ms()))

    def address_of(self, holder: str) -> str:
        """A holder's address: the root's table, else the newest past view that lists it."""
        if holder in self.table:
            return self.table[holder]
        for view in reversed(self.past_views):
            if holder in view.members:
                return view.members[holder]
        raise KeyError(holder)

    # ------------------------------------------------------------ answering (an old holder)

    @receptor("pay.handover")
    async def _r_handover(self, env: envelope.Envelope) -> Any:
        """This holder's votes on an account from a seq on, and its seal (see the module docstring)."""
        account = self._account(env.payload)
        start, view = env.payload.get("from"), env.payload.get("view")
        if isinstance(start, bool) or not isinstance(start, int) or start < 1 or not isinstance(view, str):
            raise RequestError("malformed", '{"account", "from": seq, "view": the asker\'s view digest}')
        if env.signer not in self.members:
            self.counters["pay_handover_refused:not_member"] += 1
            raise RequestError("not_member", "a handover is asked by a member of this holder's view", 403)
        if view != self.view:
            await self.refresh_view()
        if view != self.view:
            self.counters["pay_refused:view_mismatch"] += 1
            raise RequestError("view_mismatch", f"this holder's member view is {self.view}, not {view}", 409)
        holders, _ = self._holders(account)
        self.sealed[account] = (frozenset(holders), start, self.clock.now_ms() + WINDOW_MS)
        self.sealed.move_to_end(account)
        while len(self.sealed) > MAX_SEALED:
            self.sealed.popitem(last=False)
        self.counters["pay_handover_sealed"] += 1
        return {"votes": [v.to_dict() for v in self._votes_from(account, start)], "sealed": True}

    def _votes_from(self, account: str, start: int) -> list[Acceptance]:
        votes = self.ledger.holder.state.votes
        return [v for s in range(start, start + MAX_VOTES) if (v := votes.get((account, s))) is not None]

    def check_sealed(self, account: str, seq: int) -> None:
        """Refuse a vote at `seq` on a sealed account while this holder's set is not the sealed one."""
        seal = self.sealed.get(account)
        if seal is None or seq < seal[1] or self.clock.now_ms() > seal[2]:
            return
        if frozenset(self.sets.of(account)) != seal[0]:
            self.counters["pay_refused:handover_pending"] += 1
            raise RequestError("handover_pending", "this account was handed over to another holder set", 503)

    # ------------------------------------------------------------ asking (a holder about to vote)

    async def hand_over(self, tx: Tx) -> None:
        """Before a first vote at (account, seq): every old holder set of the last `WINDOW_MS` answered
        and none of them voted another transaction there (`handover.judge`), else the refusal."""
        if (tx.account, tx.seq) in self.ledger.holder.state.votes or not self.ledger.holder.holds(tx.account):
            return  # its own vote answers, or the core refuses it as not a holder
        current, q = self._holders(tx.account)
        olds = old_sets(tx.account, current, self.past_views, self.r, self.clock.now_ms())
        for old in olds:
            answers = await self._handover_answers(tx.account, tx.seq, old)
            try:
                judge(tx.id, tx.seq, old, answers, q, self.faulty, frozenset(self.excluded))
            except LedgerError as exc:
                self.counters[f"pay_handover:{exc.reason}"] += 1
                raise self._refuse(exc) from None
        seal = self.sealed.get(tx.account)
        if seal is not None and seal[0] in {frozenset(o) for o in olds}:
            # sealed to a set this holder has just handed the account over from (its holders are sealed to
            # today's set now): today's set is the one it may vote under
            self.sealed[tx.account] = (frozenset(current), seal[1], seal[2])

    async def _handover_answers(self, account: str, seq: int, old: tuple[str, ...]) -> tuple[Answer, ...]:
        """The old set's sealed answers from `seq` on (a complete handover is remembered)."""
        now = self.clock.now_ms()
        done = self.handed.get((account, old))
        if done is not None and done[0] <= seq and now < done[1]:
            return done[2]
        me = self.key.public_key_hex
        others = [h for h in old if h != me]
        payload = {"account": account, "from": seq, "view": self.view}
        replies = await asyncio.gather(*(self._bounded(h, "pay.handover", payload) for h in others))
        answers = [Answer(me, tuple(self._votes_from(account, seq)))] if me in old else []
        for holder, reply in zip(others, replies, strict=True):
            got = self._sealed_answer(holder, account, seq, reply)
            if got is not None:
                answers.append(got)
        proven = frozenset(self.excluded)
        heard = {a.holder for a in answers if a.holder not in proven}
        if len(heard) >= wanted(old, self.sets.quorum(account), self.faulty, proven):
            self.handed[(account, old)] = (seq, now + WINDOW_MS, tuple(answers))
            while len(self.handed) > MAX_HANDED:
                self.handed.popitem(last=False)
        self.counters["pay_handover_asked"] += 1
        return tuple(answers)

    def _sealed_answer(self, holder: str, account: str, seq: int, reply: dict[str, Any] | str) -> Answer | None:
        """A sealed answer with each vote checked to be that holder's on that account, else None."""
        if not isinstance(reply, dict) or reply.get("sealed") is not True or not isinstance(reply.get("votes"), list):
            return None
        votes = []
        for doc in reply["votes"][:MAX_VOTES]:
            try:
                v = check_acceptance(doc)
            except LedgerError:
                self.counters["pay_handover_bad_vote"] += 1
                return None
            if (v.holder, v.account) != (holder, account) or v.seq < seq:
                self.counters["pay_handover_bad_vote"] += 1
                return None
            votes.append(v)
        return Answer(holder, tuple(votes))
