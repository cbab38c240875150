"""`DurableHolder`: a ledger `Holder` whose every decision is on disk (`LedgerStore`) before it is answered.

One decision, one SQLite transaction, committed before the signed answer leaves; decisions taken
together inside `DurableHolder.one_commit` (a bundle's, a certificate's confirm and credit) share
one COMMIT (group commit), each under its own savepoint so a refused one writes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..keys import SigningKey
from .certificate import Acceptance, Certificate, HolderSets
from .holder import TX_MAX_AGE_MS, TX_MAX_FUTURE_MS, Holder, WorkCheck, no_work_verified
from .holderstate import Event, Settled, Skipped
from .htlc import HTLC_GRACE_MS, Resolution, ResolutionCertificate, Vote
from .skip import Skip
from .store import LedgerStore
from .tx import Tx


class DurableHolder:
    """A `Holder` whose every decision is on disk before it is answered."""

    def __init__(
        self,
        path: str | Path,
        key: SigningKey,
        sets: HolderSets,
        *,
        verify_work: WorkCheck = no_work_verified,
        max_age_ms: int = TX_MAX_AGE_MS,
        max_future_ms: int = TX_MAX_FUTURE_MS,
        htlc_grace_ms: int = HTLC_GRACE_MS,
    ) -> None:
        self.store = LedgerStore(path, key.public_key_hex)
        try:
            state = self.store.load()
        except BaseException:
            self.store.close()
            raise
        self.holder = Holder(
            key,
            sets,
            verify_work=verify_work,
            state=state,
            max_age_ms=max_age_ms,
            max_future_ms=max_future_ms,
            htlc_grace_ms=htlc_grace_ms,
        )

    def accept(self, tx: Tx, now_ms: int, taken: Iterable[Acceptance] = ()) -> Acceptance:
        """The signed acceptance of `tx`, durable before it is returned (or the typed refusal); `taken`:
        other holders' votes for it (`Holder.taken_in_time`)."""
        event = self.holder.decide_accept(tx, now_ms, taken)
        self._apply(event)
        return event.acceptance

    def on_certificate(self, cert: Certificate, *, vouched: bool = False) -> list[Event]:
        """Credit and/or confirm from a certificate, each event durable before the next is decided
        (`vouched`: handed over by enough holders, `Holder.certificate_events`)."""
        return list(self.holder.certificate_events(cert, apply=self._apply, vouched=vouched))

    def resolve(self, res: Resolution, now_ms: int, proof: Iterable[Vote] = ()) -> Vote:
        """This holder's vote for a lock's resolution, durable before it is returned (or the typed refusal)."""
        event = self.holder.decide_resolve(res, now_ms, proof)
        self._apply(event)
        return event.vote

    def settle(self, cert: ResolutionCertificate, *, vouched: bool = False) -> Settled:
        """Record and/or credit a certified resolution, durable before it is applied."""
        event = self.holder.decide_settle(cert, vouched=vouched)
        self._apply(event)
        return event

    def skip(self, skip: Skip, *, vouched: bool = False) -> Skipped:
        """Settle a split seq as skipped (`skip.py`), durable before it is applied."""
        event = self.holder.decide_skip(skip, vouched=vouched)
        self._apply(event)
        return event

    @contextlib.contextmanager
    def one_commit(self) -> Iterator[None]:
        """Decisions taken inside share one durable write (group commit): each is written (under its
        own savepoint) and applied as it is taken, so the next sees it, and one COMMIT at the end
        makes them all durable before the caller answers any. Nothing inside may await: no other
        request may see or answer from a decision that is not on disk yet. A failed COMMIT (a full
        disk) rolls all of it back and reloads the state from disk, so memory again holds exactly
        what is durable. Nested, the outer block commits."""
        if self.store.in_group:
            yield
            return
        self.store.begin_group()
        try:
            yield  # a refusal escaping it still commits the decisions before it, as each alone would be
        finally:
            try:
                self.store.end_group()
            except BaseException:
                self.holder.state = self.store.load()
                raise

    def _apply(self, event: Event) -> None:
        if event.new:
            self.store.commit([event])
            self.holder.apply(event)

    def close(self) -> None:
        self.store.close()
