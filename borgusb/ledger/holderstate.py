"""What a ledger holder keeps (`HolderState`: chains, votes, credits, lock resolutions) and the
events its decisions return (`Event`): `holder.Holder` decides, returning an event and changing
nothing; its caller makes the event durable (`durable.DurableHolder`), then `Holder.apply` folds
it into the state. Plain data, no rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .certificate import Acceptance, Certificate
from .htlc import Resolution, ResolutionCertificate, Vote
from .skip import Skip
from .tx import Tx


@dataclass(slots=True)
class Entry:
    """A chain entry: the transaction this holder has at that seq, and its certificate once seen;
    or a skip (`skip.py`): its `Skip.entry` as `tx` (no amount), settled by the skip itself."""

    tx: Tx
    cert: Certificate | None = None
    skip: Skip | None = None


@dataclass(slots=True)
class Chain:
    """One account as this holder knows it."""

    entries: list[Entry] = field(default_factory=list)  # entries[i] is seq i + 1
    confirmed: int = 0  # highest seq seen certified; entries up to it are settled
    credited: int = 0  # units credited by certificates
    spent: int = 0  # sum over every entry
    spent_confirmed: int = 0  # sum over entries[:confirmed]
    refs: dict[str, str] = field(default_factory=dict)  # ref -> id of the entry carrying it (rewards: work paid)

    def recount(self) -> None:
        self.spent = sum(e.tx.amount for e in self.entries)
        self.spent_confirmed = sum(e.tx.amount for e in self.entries[: self.confirmed])
        self.refs = {e.tx.ref: e.tx.id for e in self.entries if e.tx.ref}


@dataclass(slots=True)
class HolderState:
    """Everything a holder must never forget (`store.LedgerStore` keeps it on disk)."""

    votes: dict[tuple[str, int], Acceptance] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)
    credits: dict[str, tuple[str, int]] = field(default_factory=dict)  # tx id -> (payee, amount)
    res_votes: dict[str, Vote] = field(default_factory=dict)  # lock id -> this holder's one resolution vote
    resolved: dict[str, ResolutionCertificate] = field(default_factory=dict)  # lock id -> certified resolution
    htlc_credits: dict[str, tuple[str, int]] = field(default_factory=dict)  # lock id -> (beneficiary, amount)

    def chain(self, account: str) -> Chain:
        found = self.chains.get(account)
        if found is None:
            found = self.chains[account] = Chain()
        return found


# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Accepted:
    """This holder accepts `tx`; `new` is False for a replay (same acceptance, nothing to store)."""

    tx: Tx
    acceptance: Acceptance
    new: bool


@dataclass(frozen=True, slots=True)
class Confirmed:
    """`cert` settles the payer's entry at its seq; `replaced` is this holder's losing entry, if any
    (dropped with every entry after it, which were built on it and can never be certified)."""

    cert: Certificate
    replaced: str | None
    new: bool


@dataclass(frozen=True, slots=True)
class Skipped:
    """`skip` settles its (account, seq) as an entry with no amount; `replaced` is this holder's own
    uncertified entry there, if any (dropped with every entry after it, built on it)."""

    skip: Skip
    replaced: str | None
    new: bool


@dataclass(frozen=True, slots=True)
class Credited:
    """`cert` credits its payee (once per transaction id)."""

    cert: Certificate
    new: bool


@dataclass(frozen=True, slots=True)
class Voted:
    """This holder votes for `resolution` of its lock; `new` is False for a replay."""

    resolution: Resolution
    vote: Vote
    new: bool
    replaces: str = ""  # the refund this vote for a claim supersedes (`decide_resolve`'s proof rule)


@dataclass(frozen=True, slots=True)
class Settled:
    """`cert` resolves its lock: `record` as the lock's holder, `credit` as the beneficiary's (each once)."""

    cert: ResolutionCertificate
    record: bool
    credit: bool

    @property
    def new(self) -> bool:
        return self.record or self.credit


@dataclass(frozen=True, slots=True)
class LockAnswer:
    """This holder's view of a lock: unknown (no certified lock here), open, claimed or refunded."""

    holder: str
    state: str
    resolution: ResolutionCertificate | None

    @property
    def says(self) -> tuple[str, str]:
        return (self.state, self.resolution.resolution.id if self.resolution else "")


Event = Accepted | Confirmed | Credited | Voted | Settled | Skipped
