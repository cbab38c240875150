"""One holder of account chains: the sans-I/O state machine.

A holder is a node chosen by the lottery to keep some accounts' chains. It
takes two inputs, both already parsed (`tx.check_tx`, `certificate_from_dict`):

* a **transaction** of an account it holds: `decide_accept` either refuses it
  with a typed `LedgerError` or returns `Accepted`, carrying the holder's
  signed acceptance of (tx id, account, seq). The one rule that makes double
  spending impossible: **a holder accepts at most one transaction per
  (account, seq), forever**. The same transaction again is a replay and gets
  the same acceptance back (idempotent, nothing new to store).
* a **certificate** (`decide_confirm`, `decide_credit`), checked against the
  account's holder set: for the payer's holders it confirms the chain entry
  (replacing this holder's own entry if it had voted for a loser: the
  certificate proves the quorum chose otherwise); for the payee's holders it
  is the only way units are ever credited.

Nothing here does I/O or reads a clock: time comes in as ``now_ms``, work
verification as a callable. `decide_*` never change the state; `apply`
does. Between them the caller makes the event durable (`durable.DurableHolder`),
so an acceptance never leaves a holder before it is on disk.

Balances, as this holder knows them: ``available`` (genesis + credits −
every entry of the chain, confirmed or only accepted: what a new spend is
checked against, so an accepted spend can never be overspent while its
certificate is on its way) and ``balance`` (genesis + credits − entries up
to the highest certified sequence number: what balance reads agree on).

A **skip** (`skip.py`, `decide_skip`) settles a split (account, seq) that no transaction can
ever be certified at, shown by the acceptances already signed there: an entry with no amount,
so the chain goes on.

Hash-time locks (`htlc`): a lock is a chain entry like any spend (its units
leave the payer's balance with it). Its resolution is voted on by the
payer's holders (`decide_resolve`: at most one resolution per lock id,
forever) and a certificate of it (`decide_settle`) marks the lock resolved at
the payer's holders and credits the beneficiary at its holders, once per lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ..keys import SigningKey
from .accounts import genesis_balance
from .balance import BalanceAnswer
from .certificate import Acceptance, Certificate, HolderSets, check_known, sign_acceptance
from .errors import (
    AlreadyPaid,
    AlreadyResolved,
    BadExpiry,
    BadPrev,
    ConflictingSpend,
    Gap,
    InsufficientFunds,
    LedgerError,
    NotHolder,
    Stale,
    UnknownLock,
    UnverifiedWork,
)
from .holderstate import (
    Accepted,
    Chain,
    Confirmed,
    Credited,
    Entry,
    Event,
    HolderState,
    LockAnswer,
    Settled,
    Skipped,
    Voted,
)
from .htlc import (
    HTLC_GRACE_MS,
    Resolution,
    ResolutionCertificate,
    Vote,
    check_known_resolution,
    check_time,
    refund_id,
    sign_vote,
    yield_threshold,
)
from .skip import Skip, check_skip
from .tx import TX_MAX_AGE_MS, TX_MAX_FUTURE_MS, ZERO_HASH, Tx, check_fresh

WorkCheck = Callable[[Tx], bool]


def no_work_verified(tx: Tx) -> bool:
    """The default work check: a holder that cannot verify work pays no reward."""
    return False


class Holder:
    """The accept/confirm/credit rules of one holder (identified by its node key)."""

    def __init__(
        self,
        key: SigningKey,
        sets: HolderSets,
        *,
        verify_work: WorkCheck = no_work_verified,
        state: HolderState | None = None,
        max_age_ms: int = TX_MAX_AGE_MS,
        max_future_ms: int = TX_MAX_FUTURE_MS,
        htlc_grace_ms: int = HTLC_GRACE_MS,
    ) -> None:
        self.key = key
        self.htlc_grace_ms = htlc_grace_ms
        self.pubkey = key.public_key_hex
        self.sets = sets
        self.verify_work = verify_work
        self.state = state if state is not None else HolderState()
        self.max_age_ms = max_age_ms
        self.max_future_ms = max_future_ms

    def holds(self, account: str) -> bool:
        return self.pubkey in self.sets.of(account)

    # -------------------------------------------------------------- balances

    def available(self, account: str) -> int:
        """What a new spend of `account` is checked against."""
        c = self.state.chains.get(account)
        return genesis_balance(account) + (c.credited - c.spent if c else 0)

    def balance(self, account: str) -> int:
        """The confirmed balance: genesis + credits − settled debits."""
        c = self.state.chains.get(account)
        return genesis_balance(account) + (c.credited - c.spent_confirmed if c else 0)

    def head(self, account: str) -> tuple[int, str]:
        """(seq, id) of the last entry this holder has for `account` ((0, ZERO_HASH) for none)."""
        c = self.state.chains.get(account)
        if not c or not c.entries:
            return 0, ZERO_HASH
        return len(c.entries), c.entries[-1].tx.id

    def answer(self, account: str) -> BalanceAnswer:
        """This holder's answer to a balance read (`balance.read_balance`)."""
        c = self.state.chains.get(account)
        seq = c.confirmed if c else 0
        head = c.entries[seq - 1].tx.id if c and seq else ZERO_HASH
        return BalanceAnswer(self.pubkey, account, self.balance(account), seq, head)

    # -------------------------------------------------------------- decisions (pure)

    def decide_accept(self, tx: Tx, now_ms: int, taken: Iterable[Acceptance] = ()) -> Accepted:
        """Accept `tx` or raise the typed refusal; the state is not changed (see `apply`). `taken`: other
        holders' votes for it, which let a transaction past its age in (`taken_in_time`)."""
        if not self.holds(tx.account):
            raise NotHolder(f"{self.pubkey[:16]} does not hold {tx.account[:16]}")
        vote = self.state.votes.get((tx.account, tx.seq))
        digest = self.sets.digest(tx.account)
        if vote is not None:
            if vote.id == tx.id:  # replay: the same vote, whatever the time now, signed for today's set
                same = vote if vote.set_id == digest else sign_acceptance(self.key, tx, digest)
                return Accepted(tx, same, new=False)
            raise ConflictingSpend(vote.id)
        chain = self.state.chains.get(tx.account) or Chain()
        head = len(chain.entries)
        if tx.seq > head + 1:
            raise Gap(f"seq {tx.seq} after {head}: transaction {head + 1} first")
        if tx.seq <= head:
            have = chain.entries[tx.seq - 1]
            if have.tx.id != tx.id:
                raise ConflictingSpend(have.tx.id, f"this holder has {have.tx.id} at that sequence number")
            return Accepted(tx, sign_acceptance(self.key, tx, digest), new=True)  # settled here: a vote changes nothing
        before = chain.entries[tx.seq - 2].tx if tx.seq > 1 else None
        if before is not None and before.id != tx.prev:
            if tx.seq - 1 > chain.confirmed:  # this holder's vote there lost: it lacks the winner's certificate
                raise Gap(f"transaction {tx.seq - 1} here is {before.id}, not certified: send its certificate first")
            raise BadPrev(f"transaction {tx.seq - 1} is {before.id}, not {tx.prev}")
        if now_ms - tx.ts <= self.max_age_ms or not self.taken_in_time(tx, taken):
            check_fresh(tx, now_ms, self.max_age_ms, self.max_future_ms)
        if before is not None and tx.ts < before.ts:
            raise Stale("dated before the payer's previous transaction")
        if tx.kind == "htlc-lock" and tx.expiry <= now_ms:
            raise BadExpiry(f"the lock expired {now_ms - tx.expiry} ms ago")
        if tx.kind == "reward":
            paid = chain.refs.get(tx.ref)
            if paid is not None:
                raise AlreadyPaid(f"work {tx.ref} is paid by {paid}")
            if not self.verify_work(tx):
                raise UnverifiedWork(f"no verified work {tx.ref} for this reward")
        available = self.available(tx.account)
        if tx.amount > available:
            raise InsufficientFunds(available, tx.amount)
        return Accepted(tx, sign_acceptance(self.key, tx, digest), new=True)

    def taken_in_time(self, tx: Tx, taken: Iterable[Acceptance]) -> bool:
        """Whether faulty + 1 holders of one set this holder knows for the account voted for `tx`: one of
        them is honest and took it while it was fresh, so it is no old transaction dug up (what the age
        limit stops), but one sent again after a quorum was away longer than that limit. Without this, its
        voters' slots stay taken and the other holders refuse it as stale: the seq could never settle."""
        voters: dict[str, set[str]] = {}
        for a in taken:
            if (a.id, a.account, a.seq) != (tx.id, tx.account, tx.seq):
                continue
            try:
                holders, _ = self.sets.known(tx.account, a.set_id)
            except LedgerError:
                continue
            seen = voters.setdefault(a.set_id, set())
            if a.holder in holders and a.holder != self.pubkey and a.holder not in seen and a.verify():
                seen.add(a.holder)
                if len(seen) > self.sets.faulty:
                    return True
        return False

    def _check(self, cert: Certificate) -> None:
        check_known(cert, self.sets)

    def decide_confirm(self, cert: Certificate) -> Confirmed:
        """Settle the payer's entry at the certificate's seq (this holder holds the payer)."""
        if not self.holds(cert.tx.account):
            raise NotHolder(f"{self.pubkey[:16]} does not hold {cert.tx.account[:16]}")
        self._check(cert)
        return self._confirm(cert)

    def _confirm(self, cert: Certificate) -> Confirmed:
        tx = cert.tx
        chain = self.state.chains.get(tx.account) or Chain()
        head = len(chain.entries)
        if tx.seq > head + 1:
            raise Gap(f"certificate for seq {tx.seq}, this holder has {head}: send the earlier ones first")
        if tx.seq > 1 and chain.entries[tx.seq - 2].tx.id != tx.prev:
            if tx.seq - 1 > chain.confirmed:  # this holder's vote there lost: it lacks the winner's certificate
                raise Gap(f"certified transaction {tx.seq} follows a certificate this holder lacks")
            raise BadPrev(f"certified transaction {tx.seq} follows one this holder does not have")
        if tx.seq <= head:
            have = chain.entries[tx.seq - 1]
            if have.tx.id == tx.id:
                return Confirmed(cert, None, new=have.cert is None or tx.seq > chain.confirmed)
            if have.cert is not None or tx.seq <= chain.confirmed:
                # two certificates for one (account, seq): more holders broke the rule than the quorum tolerates
                raise ConflictingSpend(have.tx.id, "another transaction is certified at that sequence number")
            return Confirmed(cert, have.tx.id, new=True)
        return Confirmed(cert, None, new=True)

    def decide_skip(self, skip: Skip, *, vouched: bool = False) -> Skipped:
        """Settle a split (account, seq) as skipped (`skip.py`): only after the entry before it is
        settled here, and never over a certified transaction. `vouched`: handed over by enough of the
        account's holders (`handoff.py`) that its acceptances, of an older set, need no check here."""
        account, seq = skip.account, skip.seq
        if not self.holds(account):
            raise NotHolder(f"{self.pubkey[:16]} does not hold {account[:16]}")
        if not vouched:
            check_skip(skip, self.sets.of(account), self.sets.quorum(account), self.sets.faulty)
        chain = self.state.chains.get(account) or Chain()
        if seq - 1 > chain.confirmed:
            raise Gap(f"skip of seq {seq}, this holder has {chain.confirmed} settled: send the certificates first")
        before = chain.entries[seq - 2].tx.id if seq > 1 else ZERO_HASH
        if before != skip.prev:
            raise BadPrev(f"the skip follows {skip.prev}, this holder's settled entry {seq - 1} is {before}")
        if seq > len(chain.entries):
            return Skipped(skip, None, new=True)
        have = chain.entries[seq - 1]
        if have.tx.id == skip.id:
            return Skipped(skip, None, new=False)
        if have.cert is not None or seq <= chain.confirmed:
            # a certificate where the acceptances prove none can exist: more liars than the quorum tolerates
            raise ConflictingSpend(have.tx.id, "a transaction is certified at that sequence number")
        return Skipped(skip, have.tx.id, new=True)

    def decide_credit(self, cert: Certificate) -> Credited:
        """Credit the payee (this holder holds the payee): only ever from a checked certificate.
        A lock credits nobody: its units wait for a resolution (`decide_settle`)."""
        if not self.holds(cert.tx.to) or cert.tx.kind == "htlc-lock":
            raise NotHolder(f"{self.pubkey[:16]} does not hold {cert.tx.to[:16]}")
        self._check(cert)
        return Credited(cert, new=cert.tx.id not in self.state.credits)

    # -------------------------------------------------------------- hash-time locks (htlc)

    def locked(self, lock: Tx) -> bool:
        """True when `lock` is a certified entry of its payer's chain here (settled: certified, or before
        a certified entry)."""
        c = self.state.chains.get(lock.account)
        if c is None or len(c.entries) < lock.seq:
            return False
        entry = c.entries[lock.seq - 1]
        return entry.tx.id == lock.id and (entry.cert is not None or lock.seq <= c.confirmed)

    def decide_resolve(self, res: Resolution, now_ms: int, proof: Iterable[Vote] = ()) -> Voted:
        """Vote for `res` or raise the typed refusal: one resolution per lock id, with one exception.

        A holder that voted for the refund votes for the claim too when `proof` holds votes for that
        claim from `yield_threshold` of the lock's holders: the refund can then never be certified, and
        the lock does not stay unresolved because a claim reached some holders only before the expiry
        and the others only after it. It never goes the other way: a claim vote is final."""
        lock = res.lock
        if not self.holds(lock.account):
            raise NotHolder(f"{self.pubkey[:16]} does not hold {lock.account[:16]}")
        vote = self.state.res_votes.get(lock.id)
        digest = self.sets.digest(lock.account)
        if vote is not None:
            if vote.id == res.id:  # replay: the same vote, whatever the time now, signed for today's set
                return Voted(res, vote if vote.set_id == digest else sign_vote(self.key, res, digest), new=False)
            if res.kind == "htlc-claim" and vote.id == refund_id(lock) and lock.id not in self.state.resolved:
                holders = self.sets.of(lock.account)
                need = yield_threshold(len(holders), self.sets.quorum(lock.account), self.sets.faulty)
                if len(_claim_voters(res, proof, holders)) >= need:
                    return Voted(res, sign_vote(self.key, res, digest), new=True, replaces=vote.id)
            raise AlreadyResolved(vote.id)
        done = self.state.resolved.get(lock.id)
        if done is None:
            if not self.locked(lock):
                raise UnknownLock(f"no certified lock {lock.id} at {lock.account[:16]}:{lock.seq} here")
            check_time(res, now_ms, self.htlc_grace_ms)
        elif done.resolution.id != res.id:
            raise AlreadyResolved(done.resolution.id, "another resolution of this lock is certified")
        return Voted(res, sign_vote(self.key, res, digest), new=True)

    def decide_settle(self, cert: ResolutionCertificate, *, vouched: bool = False) -> Settled:
        """Record a certified resolution (as the lock's holder) and credit its beneficiary (as theirs);
        `vouched` as for `decide_skip`."""
        res = cert.resolution
        lock = res.lock
        record, credit = self.holds(lock.account), self.holds(res.beneficiary)
        if not record and not credit:
            raise NotHolder(f"{self.pubkey[:16]} holds neither the lock's payer nor its beneficiary")
        if not vouched:
            check_known_resolution(cert, self.sets)
        done = self.state.resolved.get(lock.id)
        if done is not None and done.resolution.id != res.id:
            # two certified resolutions of one lock: more holders lied than the quorum tolerates
            raise AlreadyResolved(done.resolution.id, "another resolution of this lock is certified")
        return Settled(cert, record and done is None, credit and lock.id not in self.state.htlc_credits)

    def lock_answer(self, lock: Tx) -> LockAnswer:
        """This holder's answer to a lock lookup (`pay.lock`), for a quorum read."""
        done = self.state.resolved.get(lock.id)
        if done is not None:
            return LockAnswer(self.pubkey, "claimed" if done.resolution.kind == "htlc-claim" else "refunded", done)
        return LockAnswer(self.pubkey, "open" if self.locked(lock) else "unknown", None)

    # -------------------------------------------------------------- state changes

    def apply(self, event: Event) -> None:
        """Apply a decided event (after the caller made it durable)."""
        if not event.new:
            return
        st = self.state
        if isinstance(event, Accepted):
            tx = event.tx
            st.votes[(tx.account, tx.seq)] = event.acceptance
            chain = st.chain(tx.account)
            if tx.seq == len(chain.entries) + 1:
                chain.entries.append(Entry(tx))
                chain.spent += tx.amount
                if tx.ref:
                    chain.refs[tx.ref] = tx.id
        elif isinstance(event, Confirmed):
            tx = event.cert.tx
            chain = st.chain(tx.account)
            if event.replaced is not None:  # rare: recount from scratch
                del chain.entries[tx.seq - 1 :]
                chain.entries.append(Entry(tx, event.cert))
                chain.confirmed = tx.seq
                chain.recount()
                return
            if tx.seq == len(chain.entries) + 1:
                chain.entries.append(Entry(tx))
                chain.spent += tx.amount
                if tx.ref:
                    chain.refs[tx.ref] = tx.id
            chain.entries[tx.seq - 1].cert = event.cert
            if tx.seq > chain.confirmed:  # the common case costs the entries newly settled, not the chain
                chain.spent_confirmed += sum(e.tx.amount for e in chain.entries[chain.confirmed : tx.seq])
                chain.confirmed = tx.seq
        elif isinstance(event, Skipped):
            chain = st.chain(event.skip.account)
            del chain.entries[event.skip.seq - 1 :]
            chain.entries.append(Entry(event.skip.entry(), None, event.skip))
            chain.confirmed = event.skip.seq
            chain.recount()
        elif isinstance(event, Credited):
            tx = event.cert.tx
            st.credits[tx.id] = (tx.to, tx.amount)
            st.chain(tx.to).credited += tx.amount
        elif isinstance(event, Voted):
            st.res_votes[event.resolution.lock.id] = event.vote
        else:
            res = event.cert.resolution
            if event.record:
                st.resolved[res.lock.id] = event.cert
            if event.credit:
                st.htlc_credits[res.lock.id] = (res.beneficiary, res.lock.amount)
                st.chain(res.beneficiary).credited += res.lock.amount

    # -------------------------------------------------------------- in memory (simulation, tests)

    def accept(self, tx: Tx, now_ms: int) -> Acceptance:
        event = self.decide_accept(tx, now_ms)
        self.apply(event)
        return event.acceptance

    def resolve(self, res: Resolution, now_ms: int, proof: Iterable[Vote] = ()) -> Vote:
        event = self.decide_resolve(res, now_ms, proof)
        self.apply(event)
        return event.vote

    def settle(self, cert: ResolutionCertificate) -> Settled:
        event = self.decide_settle(cert)
        self.apply(event)
        return event

    def skip(self, skip: Skip) -> Skipped:
        event = self.decide_skip(skip)
        self.apply(event)
        return event

    def on_certificate(self, cert: Certificate) -> list[Event]:
        """Credit and/or confirm, as this holder holds the payee and/or the payer.

        The credit is applied first: a confirmation refused for a gap does not
        hold back the payee's units."""
        return list(self.certificate_events(cert, apply=self.apply))

    def certificate_events(
        self, cert: Certificate, apply: Callable[[Event], None], *, vouched: bool = False
    ) -> Iterable[Event]:
        """The events of a certificate, each passed to `apply` (make durable, then `Holder.apply`) in turn;
        `vouched` as for `decide_skip` (the certificate's set is one this holder cannot check)."""
        payer, payee = self.holds(cert.tx.account), self.holds(cert.tx.to) and cert.tx.kind != "htlc-lock"
        if not payer and not payee:
            raise NotHolder(f"{self.pubkey[:16]} holds neither side of {cert.tx.id}")
        if not vouched:
            self._check(cert)  # once for both sides
        if payee:
            credit = Credited(cert, new=cert.tx.id not in self.state.credits)
            apply(credit)
            yield credit
        if payer:
            confirm = self._confirm(cert)
            apply(confirm)
            yield confirm


def _claim_voters(res: Resolution, proof: Iterable[Vote], holders: Sequence[str]) -> set[str]:
    """The distinct holders among `holders` whose vote in `proof` is for `res` and verifies."""
    found: dict[str, Vote] = {}
    for v in proof:
        if v.holder in holders and (v.lock, v.id) == (res.lock.id, res.id):
            found.setdefault(v.holder, v)
    return {h for h, v in found.items() if v.verify()}
