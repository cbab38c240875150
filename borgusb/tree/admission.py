"""New members admitted per address: what one address may add to a tree.

Keys are free, so one machine can ask to join as a thousand members; each one the root
places takes a position, a parent's attention and, when it never answers, a repair. So
every node that takes a join straight from its joiner (hops 0: the root, or a member that
passes it on to the root) admits at most `burst` at once and then one per `every_ms` from
each address, the address the join came from (the socket's: `TreeNode.on_message`'s
source), not the one the joiner claims: claiming a thousand addresses buys no more than
one. Such a join must be signed by the key it asks to place, and a member passes on no
other, so one key cannot ask for made-up members. A join a member forwarded (hops 1,
taken only from a member the root places, with the joiner's own signed join inside:
cells/kit/joins.py) is admitted there by the address the joiner claims: the root cannot
see its source, and the member spent that source's admission.

Resyncs: the root lets a member it places ask again freely. A member passing a join on
cannot tell, so it charges a resync like a new member. That starves no one: a placed
member asks the root itself (after a reject, or first when it rejoins) and reaches a
member only when the root does not answer; it then spends only its own address's admissions, which a
flood must come from that address to exhaust, and a refused joiner tries its next
candidate. What stays: many nodes behind one NAT share one address (a burst, then one a
second); a node relayed by a gateway sees joins through the relay from the gateway's
address. Pure: time is passed in, in ms;
at most `max_addresses` addresses are kept (least recently used dropped, which only ever
errs toward admitting).
"""

from __future__ import annotations

from collections import OrderedDict


class JoinAdmission:
    """A token bucket of new members per address, in integer ms."""

    def __init__(self, burst: int, every_ms: int, max_addresses: int = 10_000) -> None:
        if burst < 1 or every_ms < 1:
            raise ValueError("burst and every_ms are at least 1")
        self.burst = burst
        self.every_ms = every_ms
        self.max_addresses = max_addresses
        self._spent: OrderedDict[str, int] = OrderedDict()  # address -> ms at which its bucket is full again

    def __len__(self) -> int:
        return len(self._spent)

    def allow(self, address: str, now_ms: int) -> bool:
        """Spend one admission of address at now_ms, if it has one left."""
        full_at = max(now_ms, self._spent.pop(address, now_ms))
        allowed = full_at + self.every_ms <= now_ms + self.burst * self.every_ms
        self._spent[address] = full_at + self.every_ms if allowed else full_at
        while len(self._spent) > self.max_addresses:
            self._spent.popitem(last=False)
        return allowed
