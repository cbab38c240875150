"""History moves with an account: how a holder new to an account's set takes its settled history.

An account's holders keep its chain, the certificates that credited it and the certified
resolutions of its locks. When the member view changes and the lottery gives the account to new
holders, those start with nothing: a balance read would find them short (``disagreement``) and
they could not check the chain's older certificates, signed under sets they never knew. So each
holder of the account under the old view **hands its settled history over** to the holders the new
view adds (``pay.handoff``, `borgusb.cells.peerpays.handoff`).

A newcomer takes a handed-over certificate it can check (its set is one it knows:
`certificate.HolderSets.known`) as it takes any other. One of an older set it cannot check; it
takes it once ``faulty + 1`` distinct holders **of one set it knows** for the account (today's, or
one of the last handover window's) handed it over (`Vouches`): at most `faulty` of them lie, so at
least one is honest, and an honest holder hands over only what it checked when it took it. The
payer's signature on every transaction is still checked; only the holders' quorum is vouched for.

Pure: no I/O; the pushing and receiving are the cell's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

MAX_PENDING = 65_536  # handed-over records waiting for more vouchers (oldest dropped first)


class Vouches:
    """Who handed over which record (an account's certificate, skip or resolution, by its id)."""

    def __init__(self, faulty: int) -> None:
        self.faulty = faulty
        self._by: OrderedDict[str, set[str]] = OrderedDict()

    def vouch(self, record: str, voucher: str, sets: Sequence[tuple[str, ...]]) -> bool:
        """Count `voucher`'s hand-over of `record`; True once ``faulty + 1`` distinct vouchers in one of
        `sets` (the account's sets the receiver knows) handed it over."""
        by = self._by.get(record)
        if by is None:
            by = self._by[record] = set()
            while len(self._by) > MAX_PENDING:
                self._by.popitem(last=False)
        by.add(voucher)
        return any(len(by.intersection(s)) > self.faulty for s in sets)

    def done(self, record: str) -> None:
        """Forget a record once it is taken."""
        self._by.pop(record, None)

    def __len__(self) -> int:
        return len(self._by)
