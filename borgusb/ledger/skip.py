"""A skip: proof, from acceptances already signed, that no transaction can ever be certified at
one (account, seq), so the account's holders go on past it.

Why: a holder accepts one transaction per (account, seq), forever. When the votes of a seq are
split (say 2/2/1 at R = 5, q = 4) no transaction there can reach the quorum, and the chain
would stop at that seq for good. For a payer that is its own doing (it signed two
transactions for one seq); the reserve has many claimants, and its sequencer can still meet a
split (two entry cells with different holder sets for a moment; a claim that went stale before
the missing holders came back): without a way past it, the reserve would pay no more rewards.

The proof needs no new vote. Acceptances of seq n from a set S of the account's R holders show
that a transaction X can gather at most ``count_S(X) + (R - |S|) + f`` acceptances: those it
has, every holder not in S, and the f liars the quorum tolerates, who could sign X too. When
that stays below q for every X (an X nobody in S took included), no certificate can exist at
seq n, whatever happens later. A skip is those acceptances; its id is the SHA-256 of (account,
seq, prev) under its own domain, the same whichever acceptances show it, so every holder that
checks one records the same entry: no amount, and seq n + 1 is taken only with ``prev`` = the
skip's id. A holder that has a certificate at seq n refuses a skip (that takes more than f
liars: `evidence.py` finds them). Docs: docs/ledger.md, "Skipping a split seq".
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import canonical
from .accounts import is_account
from .certificate import MAX_SIGS, VERSION, Acceptance, check_acceptance
from .errors import DuplicateSigner, Malformed, NotAHolderSigner, NotSkippable
from .tx import Tx

SKIP_DOMAIN = "borgusb.ledger.skip"
SKIP_KIND = "skip"  # the kind of a skip's chain entry (`Skip.entry`); never a signed transaction's
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SLOT_FIELDS = frozenset(("account", "seq", "prev"))


def skip_id(account: str, seq: int, prev: str) -> str:
    """The id of the skip of (account, seq) after `prev`: the same whichever acceptances prove it."""
    doc = {"d": SKIP_DOMAIN, "v": VERSION, "account": account, "seq": seq, "prev": prev}
    return hashlib.sha256(canonical.encode_unchecked(doc)).hexdigest()


@dataclass(frozen=True, slots=True)
class Skip:
    """The acceptances of one (account, seq) that show no transaction can be certified there."""

    account: str
    seq: int
    prev: str  # the id of the certified entry before it (the chain it continues)
    accs: tuple[Acceptance, ...]

    @property
    def id(self) -> str:
        return skip_id(self.account, self.seq, self.prev)

    def entry(self) -> Tx:
        """The chain entry a skip leaves: no amount, no payee, no signature; its id links the next."""
        return Tx(self.account, self.seq, self.prev, "", 0, SKIP_KIND, "", 0, "", self.id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "skip": {"account": self.account, "seq": self.seq, "prev": self.prev},
            "accs": [a.to_dict() for a in self.accs],
        }


def is_skip_doc(doc: Any) -> bool:
    """Whether a stored or received record is a skip (else a certificate)."""
    return isinstance(doc, dict) and "skip" in doc


def skip_from_dict(doc: Any, *, verify: bool = True) -> Skip:
    """A `Skip` from its wire form (at most `MAX_SIGS` acceptances); each acceptance's signature
    verified unless `verify` is False (a store's own rows, checked before they were written). Not
    yet checked against a holder set: that is `check_skip`."""
    if not isinstance(doc, dict) or doc.keys() != {"v", "skip", "accs"} or doc["v"] != VERSION:
        raise Malformed("a skip has exactly v, skip and accs")
    slot, accs = doc["skip"], doc["accs"]
    if not isinstance(slot, dict) or slot.keys() != _SLOT_FIELDS:
        raise Malformed("a skip names exactly the account, seq and prev it skips")
    account, seq, prev = slot["account"], slot["seq"], slot["prev"]
    if not is_account(account) or isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise Malformed("account is a public key and seq a positive integer")
    if not isinstance(prev, str) or not _HEX64.fullmatch(prev):
        raise Malformed("prev is a SHA-256 in lowercase hex")
    if not isinstance(accs, list) or not 1 <= len(accs) <= MAX_SIGS:
        raise Malformed(f"a skip carries 1 to {MAX_SIGS} acceptances")
    parsed = tuple(check_acceptance(a, verify=verify) for a in accs)
    if any((a.account, a.seq) != (account, seq) for a in parsed):
        raise Malformed("every acceptance of a skip is for the slot it skips")
    return Skip(account, seq, prev, parsed)


def check_skip(skip: Skip, holders: Sequence[str], quorum: int, faulty: int) -> None:
    """Raise unless `skip`'s acceptances, by distinct holders of `holders`, leave every transaction
    short of `quorum` even with every holder not shown and `faulty` liars on its side."""
    signers = [a.holder for a in skip.accs]
    if len(set(signers)) != len(signers):
        raise DuplicateSigner("a holder counted twice in a skip")
    outside = [h[:16] for h in signers if h not in holders]
    if outside:
        raise NotAHolderSigner(f"not holders of {skip.account[:16]}: {', '.join(outside)}")
    most = max(Counter(a.id for a in skip.accs).values())
    unseen = len(holders) - len(signers)
    if most + unseen + faulty >= quorum:
        raise NotSkippable(
            f"{most} of {len(signers)} shown acceptances agree and {unseen} holders are not shown: "
            f"with {faulty} liar(s) a transaction could still reach {quorum}"
        )


def gather_skip(account: str, seq: int, prev: str, accs: Sequence[Acceptance]) -> Skip:
    """A skip from whatever acceptances of (account, seq) were collected (one per holder kept)."""
    one: dict[str, Acceptance] = {}
    for a in accs:
        if (a.account, a.seq) == (account, seq):
            one.setdefault(a.holder, a)
    return Skip(account, seq, prev, tuple(sorted(one.values(), key=lambda a: a.holder)))
