"""peerPaysCell's side of the membership handover (the rule is `borgusb.ledger.handover`).

* **Past views.** When the member view changes, the one that ended is kept (`PastView`: its members
  with their addresses, its digest, when it ended) for `handover.WINDOW_MS`, at most `MAX_VIEWS`.
  A cell that starts (new, or restarted) has none, yet the accounts it will hold may have changed
  hands just before: until it has **learned the recent views** from other members (``pay.views``,
  answered by at least 2 faulty + 1 of those asked: each view that at least faulty + 1 of them
  report, its digest checked against its keys, ending when the (faulty + 1)-th latest report says)
  it votes on nothing (it tries at its first vote, and every second until then; ``handover_pending``
  while too few answer).
* **Asking.** Before this holder votes on a transaction at a seq where it has no vote yet, every
  holder set of the account under those past views that differs from today's is asked
  (``pay.handover``, in parallel) for its votes from that seq on, and to seal the account.
  `handover.judge` decides: a vote of theirs for another transaction there refuses this one
  (``conflicting_spend``), too few sealed answers is ``handover_pending`` (503). A complete
  handover is remembered per (account, old set) until the view changes, so one round covers the
  account's later seqs. The old sets are asked at once; a change quorum overlap covers needs none.
* **Answering and sealing.** ``pay.handover`` is answered only to a holder of the account in this
  holder's view, under the same view digest (read again once if it differs: ``view_mismatch``
  otherwise); a later ask cannot narrow a seal's first seq. The
  holder records the seal: from that seq on, it votes on the account only while its holder set is
  the one it had when it sealed (`check_sealed`, ``handover_pending`` otherwise), until a later
  handover seals it again, or until it hands the account over itself from the sealed set (a holder
  sealed to a set it later leaves for one it joins). Seals are kept for the window, at most
  `MAX_SEALED` accounts.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ... import envelope
from ...clock import Clock
from ...ledger.certificate import Acceptance, HolderSets, PastMembers, check_acceptance
from ...ledger.durable import DurableHolder
from ...ledger.errors import LedgerError
from ...ledger.handover import MAX_VOTES, WINDOW_MS, Answer, PastView, judge, judge_lock, old_sets, wanted
from ...ledger.htlc import Resolution, check_vote
from ...ledger.tx import Tx
from ..kit import RequestError, receptor
from ..kit.holdercell import HolderCell

MAX_VIEWS = 64
MAX_SEALED = 65_536
MAX_HANDED = 65_536
HISTORY_ASK = 8  # members a starting cell asks for their recent views
MAX_HISTORY_MEMBERS = 8192  # member entries one pay.views answer carries (newest views first), and one view
HISTORY_EVERY_S = 1.0


def view_digest(members: Iterable[str]) -> str:
    """The member view's name: what two nodes compare to know they compute the same holder sets."""
    return hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:32]


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
        self.history_learned = False  # the recent views of other members are known (see the module docstring)
        self._learning = asyncio.Lock()  # offers arriving together learn the views once

    def view_ended(self, members: dict[str, str], digest: str) -> None:
        """Keep the view that just ended (its sets may hold votes in flight for `WINDOW_MS`); forget the
        handovers done under it (the view may come back, with votes cast under it meanwhile)."""
        self.past_views.append(PastView(digest, dict(members), self.clock.now_ms()))
        self.handed.clear()

    def past_members(self) -> tuple[PastMembers, ...]:
        """The past views' members, for `HolderSets.known`: certificates signed under an account's set in
        one of them are taken for `WINDOW_MS` after it ended (a transaction certified just before a view
        change is still confirmed and credited after it)."""
        return tuple(PastMembers(frozenset(v.members), v.until_ms + WINDOW_MS) for v in self.past_views)

    def address_of(self, holder: str) -> str:
        """A holder's address: the root's table, else the newest past view that lists it."""
        if holder in self.table:
            return self.table[holder]
        for view in reversed(self.past_views):
            if holder in view.members:
                return view.members[holder]
        raise KeyError(holder)

    # ------------------------------------------------------------ the recent views, learned at start

    @receptor("pay.views")
    async def _r_views(self, env: envelope.Envelope) -> Any:
        """The member views this cell used in the last `WINDOW_MS` (newest first, bounded), for a member
        (one that joined a moment ago may be in the root's table before it is in ours: read once more)."""
        if env.signer not in self.members:
            await self.refresh_view()
        if env.signer not in self.members:
            self.counters["pay_views_refused:not_member"] += 1
            raise RequestError("not_member", "the recent views are given to members of this holder's view", 403)
        now, out, carried = self.clock.now_ms(), [], 0
        for view in reversed(self.past_views):
            if now - view.until_ms > WINDOW_MS or carried + len(view.members) > MAX_HISTORY_MEMBERS:
                break
            out.append({"members": dict(view.members), "until": view.until_ms})
            carried += len(view.members)
        return {"views": out}

    async def learn_history(self) -> bool:
        """Ask up to `HISTORY_ASK` other members for their recent views and keep each that at least
        faulty + 1 of them report (one liar cannot add a view, nor keep one out); True once learned."""
        async with self._learning:
            return self.history_learned or await self._learn_history()

    async def _learn_history(self) -> bool:
        me = self.key.public_key_hex
        others = [k for k in self.members if k != me]
        others = random.sample(others, min(HISTORY_ASK, len(others)))
        replies = await asyncio.gather(*(self._bounded(k, "pay.views", {}) for k in others))
        answered = [r for r in replies if isinstance(r, dict) and isinstance(r.get("views"), list)]
        if not others or len(answered) < min(2 * self.faulty + 1, len(others)):
            return False
        enough = min(self.faulty + 1, len(answered))
        now = self.clock.now_ms()
        seen: dict[str, tuple[dict[str, str], list[int]]] = {}  # digest -> (members, each reporter's end)
        for reply in answered:
            for digest, members, until in _views(reply["views"]):
                seen.setdefault(digest, (members, []))[1].append(min(until, now))
        known = {v.digest for v in self.past_views} | {self.view}
        adopted = []
        for digest, (members, ends) in seen.items():
            if len(ends) >= enough and digest not in known:
                # the end at least faulty + 1 reporters vouch for: a liar cannot stretch a view's life
                adopted.append(PastView(digest, members, sorted(ends, reverse=True)[enough - 1]))
        for view in sorted(adopted, key=lambda v: v.until_ms):
            self.past_views.append(view)
        self.sets.past = self.past_members()
        self.history_learned = True
        self.counters["pay_history_learned"] += 1
        return True

    async def _history_loop(self) -> None:
        """Learn the recent views once other members are known (asked again each second until then)."""
        while not self.history_learned:
            await asyncio.sleep(HISTORY_EVERY_S)
            if len(self.members) > 1:
                await self.learn_history()

    # ------------------------------------------------------------ answering (an old holder)

    @receptor("pay.handover")
    async def _r_handover(self, env: envelope.Envelope) -> Any:
        """This holder's votes on an account from a seq on, and its seal (see the module docstring)."""
        account = self._account(env.payload)
        start, view, lock = env.payload.get("from"), env.payload.get("view"), env.payload.get("lock", "")
        if isinstance(start, bool) or not isinstance(start, int) or start < 1 or not isinstance(view, str):
            raise RequestError("malformed", '{"account", "from": seq, "view": the asker\'s view digest}')
        if not isinstance(lock, str) or len(lock) > 64:
            raise RequestError("malformed", "lock is the id of a lock of the account")
        if view != self.view:
            await self.refresh_view()  # the asker may have read the root's table a moment sooner (it just joined)
        if env.signer not in self.members:
            self.counters["pay_handover_refused:not_member"] += 1
            raise RequestError("not_member", "a handover is asked by a member of this holder's view", 403)
        if view != self.view:
            self.counters["pay_refused:view_mismatch"] += 1
            raise RequestError("view_mismatch", f"this holder's member view is {self.view}, not {view}", 409)
        holders, _ = self._holders(account)
        if env.signer not in holders:
            self.counters["pay_handover_refused:not_holder"] += 1
            raise RequestError("not_holder", "a handover is asked by a holder of the account in this view", 403)
        had = self.sealed.get(account)
        if had is not None and had[0] == frozenset(holders):
            start = min(start, had[1])  # a later ask cannot narrow a seal
        self.sealed[account] = (frozenset(holders), start, self.clock.now_ms() + WINDOW_MS)
        self.sealed.move_to_end(account)
        while len(self.sealed) > MAX_SEALED:
            self.sealed.popitem(last=False)
        self.counters["pay_handover_sealed"] += 1
        answer: dict[str, Any] = {"votes": [v.to_dict() for v in self._votes_from(account, start)], "sealed": True}
        if lock:
            vote = self.ledger.holder.state.res_votes.get(lock)
            answer["resolution"] = vote.to_dict() if vote is not None else None
        return answer

    def _votes_from(self, account: str, start: int) -> list[Acceptance]:
        votes = self.ledger.holder.state.votes
        return [v for s in range(start, start + MAX_VOTES) if (v := votes.get((account, s))) is not None]

    def check_sealed(self, account: str, seq: int | None) -> None:
        """Refuse a vote at `seq` (None: on a resolution of the account's locks, at any seq) on a sealed
        account while this holder's set is not the sealed one."""
        seal = self.sealed.get(account)
        if seal is None or (seq is not None and seq < seal[1]) or self.clock.now_ms() > seal[2]:
            return
        if frozenset(self.sets.of(account)) != seal[0]:
            self.counters["pay_refused:handover_pending"] += 1
            raise RequestError("handover_pending", "this account was handed over to another holder set", 503)

    # ------------------------------------------------------------ asking (a holder about to vote)

    async def handed_over(self, view: str, hand: Callable[[], Awaitable[None]]) -> None:
        """Run `hand` (`hand_over` or `hand_over_lock`) before a vote offered under `view` (this cell's,
        or "": its own); `view_mismatch` if the view changed meanwhile: the vote is not under that one."""
        seen = self.view
        if not view or view == seen:
            await hand()
        if self.view != seen:
            self.counters["pay_refused:view_mismatch"] += 1
            raise RequestError("view_mismatch", "the member view changed during the handover; offer again", 409)

    async def hand_over(self, tx: Tx) -> None:
        """Before a first vote at (account, seq): every old holder set of the last `WINDOW_MS` answered
        and none of them voted another transaction there (`handover.judge`), else the refusal."""
        if (tx.account, tx.seq) in self.ledger.holder.state.votes or not self.ledger.holder.holds(tx.account):
            return  # its own vote answers, or the core refuses it as not a holder
        await self._views_learned()
        current, q = self._holders(tx.account)
        olds = old_sets(tx.account, current, self.past_views, self.r, self.clock.now_ms(), q, self.faulty)
        rounds = await asyncio.gather(*(self._handover_answers(tx.account, tx.seq, old) for old in olds))
        for old, answers in zip(olds, rounds, strict=True):
            try:
                judge(tx.id, tx.seq, old, answers, q, self.faulty, frozenset(self.excluded))
            except LedgerError as exc:
                self.counters[f"pay_handover:{exc.reason}"] += 1
                raise self._refuse(exc) from None
        self._move_seal(tx.account, current, olds)

    def _move_seal(self, account: str, current: tuple[str, ...], olds: list[tuple[str, ...]]) -> None:
        """Sealed to a set this holder has just handed the account over from (its holders are sealed to
        today's set now): today's set is the one it may vote under."""
        seal = self.sealed.get(account)
        if seal is not None and seal[0] in {frozenset(o) for o in olds}:
            self.sealed[account] = (frozenset(current), seal[1], seal[2])

    async def hand_over_lock(self, res: Resolution) -> None:
        """`hand_over` for a first vote on a lock's resolution: every old holder set of the lock's payer
        answered sealed with its vote on the lock, and none voted another resolution (`judge_lock`)."""
        lock = res.lock
        if lock.id in self.ledger.holder.state.res_votes or not self.ledger.holder.holds(lock.account):
            return
        await self._views_learned()
        current, q = self._holders(lock.account)
        olds = old_sets(lock.account, current, self.past_views, self.r, self.clock.now_ms(), q, self.faulty)
        rounds = await asyncio.gather(*(self._lock_answers(lock, old) for old in olds))
        for old, votes in zip(olds, rounds, strict=True):
            try:
                judge_lock(res.id, old, votes, q, self.faulty, frozenset(self.excluded))
            except LedgerError as exc:
                self.counters[f"pay_handover:{exc.reason}"] += 1
                raise self._refuse(exc) from None
        self._move_seal(lock.account, current, olds)

    async def _lock_answers(self, lock: Tx, old: tuple[str, ...]) -> dict[str, str | None]:
        """Each sealed old holder's resolution vote on `lock` (its id, or None)."""
        me = self.key.public_key_hex
        mine = self.ledger.holder.state.res_votes.get(lock.id)
        votes: dict[str, str | None] = {me: mine.id if mine else None} if me in old else {}
        others = [h for h in old if h != me]
        payload = {"account": lock.account, "from": lock.seq, "view": self.view, "lock": lock.id}
        replies = await asyncio.gather(*(self._bounded(h, "pay.handover", payload) for h in others))
        for holder, reply in zip(others, replies, strict=True):
            if not isinstance(reply, dict) or reply.get("sealed") is not True or "resolution" not in reply:
                continue
            doc = reply["resolution"]
            try:
                vote = check_vote(doc) if doc is not None else None
            except LedgerError:
                self.counters["pay_handover_bad_vote"] += 1
                continue
            if vote is not None and (vote.holder, vote.lock) != (holder, lock.id):
                self.counters["pay_handover_bad_vote"] += 1
                continue
            votes[holder] = vote.id if vote else None
        self.counters["pay_handover_asked"] += 1
        return votes

    async def _views_learned(self) -> None:
        """Vote on nothing before the recent member views are learned (`handover_pending`)."""
        if not self.history_learned and not await self.learn_history():
            self.counters["pay_refused:handover_pending"] += 1
            raise RequestError("handover_pending", "this holder is still learning the recent member views", 503)

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


def _views(docs: list[Any]) -> list[tuple[str, dict[str, str], int]]:
    """(digest, members, end) of each well-formed view in a ``pay.views`` answer (bounded)."""
    out = []
    for doc in docs[:MAX_VIEWS]:
        members, until = (doc.get("members"), doc.get("until")) if isinstance(doc, dict) else (None, None)
        if not isinstance(members, dict) or isinstance(until, bool) or not isinstance(until, int):
            continue
        if len(members) > MAX_HISTORY_MEMBERS or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in members.items()
        ):
            continue
        out.append((view_digest(members), dict(members), until))
    return out
