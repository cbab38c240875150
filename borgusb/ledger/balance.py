"""Reading a balance: a value only when a quorum of the account's holders agrees.

Holders learn certificates at different moments, so their answers may
differ for a while. A read groups the answers of the account's holders by
what they say (confirmed balance, the sequence number it is confirmed up to
and that transaction's id) and returns a `Balance` only when a quorum said
the same; otherwise a `Disagreement` carrying every answer counted. It never
picks a plurality, an average or the newest: the caller asks again later or
shows the disagreement. Answers are authenticated by the envelope layer (a
holder's reply is signed by its node key); here only the holder set decides
whose answer counts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from .certificate import quorum_size


@dataclass(frozen=True, slots=True)
class BalanceAnswer:
    """One holder's view of an account: confirmed balance up to confirmed transaction `seq` (id `head`)."""

    holder: str
    account: str
    balance: int
    seq: int
    head: str

    @property
    def says(self) -> tuple[int, int, str]:
        return (self.balance, self.seq, self.head)


@dataclass(frozen=True, slots=True)
class Balance:
    """What a quorum of the account's holders agreed on."""

    account: str
    balance: int
    seq: int
    head: str
    holders: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Disagreement:
    """No quorum agreed; `answers` are the counted ones (holders of the account, one each)."""

    account: str
    why: Literal["too_few_answers", "no_quorum"]
    answers: tuple[BalanceAnswer, ...]
    quorum: int


def read_balance(
    account: str, answers: Iterable[BalanceAnswer], holders: Sequence[str], quorum: int | None = None
) -> Balance | Disagreement:
    """Agree on `account`'s balance from holders' answers, or report why not.

    Answers about another account or from a key outside `holders` are not
    counted; a holder that gave two different answers is not counted either
    (it contradicted itself); the same answer twice counts once."""
    members = frozenset(holders)
    need = quorum_size(len(members)) if quorum is None else quorum
    by_holder: dict[str, BalanceAnswer | None] = {}
    for a in answers:
        if a.account != account or a.holder not in members:
            continue
        if a.holder in by_holder:
            prior = by_holder[a.holder]
            if prior is not None and prior.says != a.says:
                by_holder[a.holder] = None
            continue
        by_holder[a.holder] = a
    counted = tuple(sorted((a for a in by_holder.values() if a is not None), key=lambda a: a.holder))
    if len(counted) < need:
        return Disagreement(account, "too_few_answers", counted, need)
    groups: dict[tuple[int, int, str], list[str]] = defaultdict(list)
    for a in counted:
        groups[a.says].append(a.holder)
    for (balance, seq, head), who in groups.items():
        if len(who) >= need:
            return Balance(account, balance, seq, head, tuple(who))
    return Disagreement(account, "no_quorum", counted, need)
