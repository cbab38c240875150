"""Handing an account over when its holder set changes: what a holder must learn before it votes.

An account's holders are the lottery's winners over the member view (`certificate.holder_set`).
When members join or leave, the set can change, and a vote in flight under the old set (accepted by
some old holders, not certified yet) is invisible to the new ones. With q = 4 of 5, three holders
replaced at once could certify a second spend under the new set while the old set certifies the
first: the one thing the ledger must never do (docs/ledger.md, "Membership handover").

So a holder whose set for the account differs from the set under a view it used in the last
`WINDOW_MS` (longer than a transaction stays fresh: `tx.TX_MAX_AGE_MS`) asks that old set, before its
first vote on the account from some seq on, for their votes from that seq on, and has each of them
**seal** the account: from then on they vote at those seqs only under the new set. It votes only
when at least `wanted` = r − q + faulty + 1 holders of every such old set answered sealed (3 of 5
for q = 4, f = 1), and never for a transaction other than one they voted for:

* a transaction certified under the old set had q old votes, so among any `need` answers at least
  faulty + 1 voted for it, and at least one of them honestly says so: the new holder refuses
  anything else (``conflicting_spend``);
* a transaction not yet certified can no longer gain the votes of the old holders that left the
  set and answered: they are sealed.

Votes are bound to their set: an acceptance signs the holder set it was cast in
(`certificate.set_digest`) and a certificate counts only the acceptances of the set it names. So a
holder in both sets that answered "no vote" and votes later, under the new view, for the old set's
transaction adds nothing to an old-set certificate: once sealed, the old set can never complete it.

Too few answers is ``handover_pending`` (503: try again; with r = 5 it takes three of the old five
down at once). A change that quorum overlap already covers needs no round (`overlap_safe`).
Pure: no I/O, time passed in; the asking and sealing are the cell's (`borgusb.cells.peerpays.handover`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .certificate import Acceptance, holder_set
from .errors import AlreadyResolved, ConflictingSpend, HandoverPending
from .tx import TX_MAX_AGE_MS

WINDOW_MS = TX_MAX_AGE_MS + 5 * 60_000  # a vote in flight under an old set can be certified this long
MAX_VOTES = 8  # votes from one seq on that one holder gives (it votes at most one seq past its chain)


def wanted(old: tuple[str, ...], q: int, faulty: int, proven: frozenset[str] = frozenset()) -> int:
    """Sealed answers needed from the old set `old` (quorum q, `faulty` liars tolerated): r − q + faulty
    + 1 (3 of 5 for q = 4, f = 1). Holders `proven` to lie (equivocation evidence) are not asked to
    count: of the others, r − q + 1 must answer, plus one for each liar `faulty` allows beyond the
    proven ones, or all of them when fewer are left."""
    liars = sum(1 for h in old if h in proven)
    return max(1, min(len(old) - liars, len(old) - q + 1 + max(0, faulty - liars)))


@dataclass(frozen=True, slots=True)
class PastView:
    """A member view this holder used until `until_ms`: its members (key -> address) and digest."""

    digest: str
    members: Mapping[str, str]
    until_ms: int


@dataclass(frozen=True, slots=True)
class Answer:
    """An old holder's sealed answer: its votes on the account from the asked seq on."""

    holder: str
    votes: tuple[Acceptance, ...]


def overlap_safe(changed: int, r: int, q: int, faulty: int) -> bool:
    """Whether `changed` holders replaced between two sets keep every quorum of one sharing more than
    `faulty` holders with every quorum of the other (q + q − (r + changed) > faulty): then no handover
    is needed (one holder with q = 4 of 5 and f = 1)."""
    return 2 * q - r - changed > faulty


def old_sets(
    account: str, current: tuple[str, ...], past: Iterable[PastView], r: int, now_ms: int, q: int = 0, faulty: int = 0
) -> list[tuple[str, ...]]:
    """The account's holder sets under the views of the last `WINDOW_MS` that differ from `current`
    by more than quorum overlap covers (`overlap_safe`, when q is given; views with fewer than r
    members held nothing), each once."""
    found: list[tuple[str, ...]] = []
    for view in past:
        if now_ms - view.until_ms > WINDOW_MS or len(view.members) < r:
            continue
        s = holder_set(account, view.members, r)
        changed = len(set(s) - set(current))
        if changed and not (q and overlap_safe(changed, r, q, faulty)) and s not in found:
            found.append(s)
    return found


def judge_lock(
    res_id: str,
    old: tuple[str, ...],
    votes: Mapping[str, str | None],
    q: int,
    faulty: int,
    proven: frozenset[str] = frozenset(),
) -> None:
    """`judge` for a lock's resolution: `votes` maps each old holder that answered sealed to the resolution
    id it voted for the lock (None: no vote). `AlreadyResolved` if one voted another resolution (a claim
    and a refund are never both certified: the old set's may have been), `HandoverPending` if fewer than
    `wanted` answered; else this holder may vote `res_id`."""
    heard = {h: v for h, v in votes.items() if h in old and h not in proven}
    for h, v in heard.items():
        if v is not None and v != res_id:
            raise AlreadyResolved(v, f"holder {h[:16]} of the lock's previous holder set voted {v}")
    need = wanted(old, q, faulty, proven)
    if len(heard) < need:
        raise HandoverPending(f"{len(heard)} of the lock's previous holder set answered, {need} needed: try again")


def judge(
    tx_id: str,
    seq: int,
    old: tuple[str, ...],
    answers: Iterable[Answer],
    q: int,
    faulty: int,
    proven: frozenset[str] = frozenset(),
) -> None:
    """Whether a holder of the new set may vote `tx_id` at `seq` after the old set `old` answered:
    `ConflictingSpend` if an old holder voted another transaction there, `HandoverPending` if fewer
    than `wanted` answered; else it may (as far as `old` is concerned)."""
    heard = {a.holder: a for a in answers if a.holder in old and a.holder not in proven}
    for a in heard.values():
        for v in a.votes:
            if v.seq == seq and v.id != tx_id:
                raise ConflictingSpend(v.id, f"holder {a.holder[:16]} of the account's previous set voted {v.id}")
    need = wanted(old, q, faulty, proven)
    if len(heard) < need:
        raise HandoverPending(f"{len(heard)} of the previous holder set answered, {need} needed: try again")
