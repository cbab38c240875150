"""Cell DNA: the one table of every cell type's ports and fan-out.

Every instance of a cell type listens on the same ports on every machine, so
no configuration file is needed: knowing a peer's IP is knowing where each
of its cells is. The numbers follow the original BorgIOS where it had them.
Two fixes: the base peerTreeNet collided with peerMemoryCell (1336/1339), so
it moves to 13360-13362; dogeNodeCell, serviceMgrCell and borgAgentBrain had
no ports and get free ones in the same style.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CellDNA:
    name: str
    net_port: int  # node to node (TLS, pinned by node key)
    recp_port: int  # the receptor: the cell's only public door, signed requests only
    mon_port: int  # monitoring: JSON status, counters, tree view
    max_children: int  # the tree's fan-out k
    summary: str

    def ports(self) -> tuple[int, int, int]:
        return (self.net_port, self.recp_port, self.mon_port)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "netPort": self.net_port,
            "recpPort": self.recp_port,
            "monPort": self.mon_port,
            "maxChildren": self.max_children,
            "summary": self.summary,
        }


_TABLE = [
    CellDNA("peerTreeNet", 13360, 13361, 13362, 10, "the base PeerTree network"),
    CellDNA("shardTreeCell", 13350, 13355, 13340, 25, "shard storage"),
    CellDNA("fStreamCell", 13399, 13400, 13401, 25, "binary and media streaming"),
    CellDNA("cronoTreeCell", 13396, 13397, 13398, 3, "network time"),
    CellDNA("peerPaysCell", 13390, 13392, 13391, 25, "the Borg Shell ledger"),
    CellDNA("btraderOrganCell", 11396, 11397, 11398, 3, "the Shell/Doge exchange"),
    CellDNA("dogeNodeCell", 13410, 13411, 13412, 3, "the Dogecoin bridge"),
    CellDNA("borgAgentCell", 13550, 1396, 13551, 25, "the AI agent colony"),
    CellDNA("mailTreeCell", 13393, 13395, 13394, 25, "encrypted mail"),
    CellDNA("peerMemoryCell", 1336, 1335, 1339, 25, "memory search"),
    CellDNA("serviceMgrCell", 13420, 13421, 13422, 10, "the live service registry"),
    CellDNA("ftreeFileMgrCell", 13351, 13381, 13341, 3, "the file manager"),
    CellDNA("borgAgentBrain", 13560, 13561, 13562, 25, "the agent brain (LLM loop)"),
]

CELLS: dict[str, CellDNA] = {dna.name: dna for dna in _TABLE}


def get(name: str) -> CellDNA:
    try:
        return CELLS[name]
    except KeyError:
        known = ", ".join(CELLS)
        raise ValueError(f"unknown cell type {name!r}; known: {known}") from None


def _port_owners() -> dict[int, str]:
    return {port: dna.name for dna in CELLS.values() for port in dna.ports()}


def register(row: CellDNA) -> None:
    """Add the DNA row of a cell shipped outside this package (its entry point brings it).

    The thirteen rows above stay the table; an added row may not reuse a name or a port.
    """
    if row.name in CELLS:
        if CELLS[row.name] == row:
            return
        raise ValueError(f"cell type {row.name} is already in the DNA table")
    owners = _port_owners()
    for port in row.ports():
        if port in owners:
            raise ValueError(f"port {port} of {row.name} is already used by {owners[port]}")
    CELLS[row.name] = row


def _check_unique_ports() -> None:
    seen: dict[int, str] = {}
    for dna in _TABLE:
        for port in dna.ports():
            if port in seen:
                raise AssertionError(f"port {port} of {dna.name} is also used by {seen[port]}")
            seen[port] = dna.name


_check_unique_ports()
