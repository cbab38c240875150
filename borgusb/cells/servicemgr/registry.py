"""The service registry's rules without I/O: which entries are taken, kept, shared and listed.

Who may write what (issue 15 item 2: before this, any key could list any address as any machine's
cell, or erase a machine's entries, through one broadcast):

* **An entry is a cell's own signed statement.** Each cell signs ``svc.entry`` (cell, ip, ports,
  status, load) with its node key; the entry's ``node`` *is* that signer, and a statement whose
  payload names another node is refused (``node_mismatch``). The statement itself travels to every
  serviceMgr and each one verifies it, so a serviceMgr speaks only for cells that signed. (On a
  machine whose cells share the node key, the Pi, that key signs them all; on the stick, in hosted
  mode and in local clusters each cell process has its own key, so the table's signer could not
  vouch for them.)
* **Local entries come only from the local machine:** an ``svc.announce`` or ``svc.withdraw``
  whose TCP peer is not this serviceMgr's own address is refused (``not_local``), and a cell
  announces only its own statement. Another machine cannot open a connection from our address
  (the TCP handshake needs the answer; short of sitting on the path), and every cell connects
  from its own IP.
* **A table belongs to the key that signed it:** tables are kept per verified origin; one whose
  ``origin`` names another key is refused (``origin_mismatch``), so a table only ever replaces the
  previous table of the same origin, and listings merge entries by (cell, ip, node): a forged
  entry for an address never hides the real one.
* **Bounded:** at most `Limits.max_local` local entries, `max_per_origin` entries in a table,
  `max_origins` origins and `max_remote` remote entries in all. Past a bound the newcomer is
  refused (``registry_full``, ``too_many_entries``) and nothing held is pushed out, so a flood of
  keys cannot evict a machine that is already listed.
* **Expiry:** a local entry lives `local_ttl_ms` after its last announcement; a remote one
  `remote_ttl_ms` after its cell signed it, whoever relayed it, so a replayed statement dies as
  soon as the original would.

Every refusal is counted by reason in `Registry.refused`; a refused announcement, statement or
table raises `Refused` (an expired statement in a table is only left out).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

from ... import canonical

STATEMENT = "svc.entry"  # the envelope type of a cell's signed statement about itself
MAX_PORTS = 3
MAX_LOAD_FIELDS = 16
_CELL = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_LOAD_KEY = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class Refused(Exception):
    """An announcement, statement or table the registry does not take; `reason` is a short word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Limits:
    """Lifetimes and bounds (the defaults are the serviceMgr's)."""

    local_ttl_ms: int = 3_000  # 3 announce periods: a cell that stopped announcing has stopped or failed
    remote_ttl_ms: int = 15_000  # 3 refresh periods after the cell signed its statement
    future_ms: int = 30_000  # how far ahead a statement may be dated (the envelope window)
    max_local: int = 64  # cells on this serviceMgr's address (13 cell types today)
    max_per_origin: int = 64  # entries in one origin's table
    max_origins: int = 2_048  # machines
    max_remote: int = 16_384  # entries from all origins together

    @property
    def max_verified(self) -> int:
        return self.max_remote + self.max_local


@dataclass(frozen=True, slots=True)
class Entry:
    """One cell on one node: what its signed statement says, and when it signed it."""

    node: str  # the statement's signer
    cell: str
    ip: str
    ports: tuple[int, ...]
    status: str
    load: tuple[tuple[str, int | str], ...]
    ts: int  # when the cell signed the statement (network ms)

    @classmethod
    def from_statement(cls, signer: str, ts: int, payload: object) -> Entry:
        """The entry a verified statement makes; Refused if its payload is malformed or names another node."""
        if not isinstance(payload, dict):
            raise Refused("malformed", "a statement's payload is an object")
        node = payload.get("node", signer)
        if node != signer:
            raise Refused("node_mismatch", "a statement names a node other than the key that signed it")
        cell, ip, ports = payload.get("cell"), payload.get("ip"), payload.get("ports")
        status, load = payload.get("status", ""), payload.get("load", {})
        if not isinstance(cell, str) or not _CELL.fullmatch(cell):
            raise Refused("malformed", "cell must be a cell type's name")
        if not isinstance(ip, str) or not _is_ip(ip):
            raise Refused("malformed", "ip must be an IP address")
        if (
            not isinstance(ports, list)
            or not 1 <= len(ports) <= MAX_PORTS
            or not all(isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports)
        ):
            raise Refused("malformed", f"ports must be 1 to {MAX_PORTS} port numbers")
        if not isinstance(status, str) or len(status) > 16:
            raise Refused("malformed", "status must be a short string")
        if (
            not isinstance(load, dict)
            or len(load) > MAX_LOAD_FIELDS
            or not all(_load_field(k, v) for k, v in load.items())
        ):
            raise Refused("malformed", f"load must hold at most {MAX_LOAD_FIELDS} short named figures")
        return cls(signer, cell, ip, tuple(ports), status, tuple(sorted(load.items())), ts)

    def shared_fields(self) -> tuple[str, str, tuple[int, ...]]:
        """What, when it changes, other machines should learn at once."""
        return (self.node, self.status, self.ports)

    @property
    def key(self) -> tuple[str, str, str]:
        """What tells entries apart in a listing: two keys never share one."""
        return (self.cell, self.ip, self.node)

    def listing(self, via: str, now_ms: int) -> dict[str, Any]:
        """The entry as svc.list shows it."""
        return {
            "cell": self.cell,
            "ip": self.ip,
            "ports": list(self.ports),
            "status": self.status,
            "load": dict(self.load),
            "node": self.node,
            "via": via,
            "age_ms": max(0, now_ms - self.ts),
        }


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _load_field(key: object, value: object) -> bool:
    if not isinstance(key, str) or not _LOAD_KEY.fullmatch(key):
        return False
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and len(value) <= 64)


def statement_digest(raw: object) -> bytes:
    """The digest of a statement's one byte form: a statement seen (and verified) before is known by it."""
    try:
        return hashlib.sha256(canonical.dumps(raw)).digest()
    except (canonical.CanonicalError, TypeError, ValueError):
        raise Refused("malformed", "a statement is a signed envelope") from None


@dataclass(slots=True)
class _Local:
    entry: Entry
    statement: dict[str, Any]  # the cell's signed statement, shared as it is
    seen_ms: int


@dataclass(frozen=True, slots=True)
class _Origin:
    via: str  # the address the origin gives for itself (shown, never trusted)
    entries: tuple[Entry, ...]


class Registry:
    """One serviceMgr's registry: its local cells' entries, and every other origin's table."""

    def __init__(self, own_ip: str, own_node: str, limits: Limits | None = None) -> None:
        self.own_ip = own_ip
        self.own_node = own_node
        self.limits = limits or Limits()
        self.local: dict[tuple[str, str], _Local] = {}  # (cell, ip) -> the latest announcement
        self.remote: dict[str, _Origin] = {}  # origin key -> its latest table
        self.refused: Counter[str] = Counter()
        self.changed = False  # the local entries changed since they were last shared
        self._remote_total = 0  # entries in all remote tables
        self._verified: OrderedDict[bytes, Entry] = OrderedDict()  # statement digest -> its entry

    # ------------------------------------------------------------ refusals

    def refuse(self, reason: str, detail: str) -> Refused:
        """Count a refusal and return it to raise (the cell uses it for statements that fail to verify)."""
        self.refused[reason] += 1
        return Refused(reason, detail)

    # ------------------------------------------------------------ local cells

    def require_local(self, source_ip: str | None) -> None:
        """Only a process of this machine announces or withdraws (the TCP peer is our own address)."""
        if source_ip != self.own_ip:
            raise self.refuse("not_local", f"only cells on {self.own_ip} announce to this serviceMgr")

    def announce(
        self, now_ms: int, source_ip: str | None, signer: str, entry: Entry, statement: dict[str, Any]
    ) -> None:
        """A local cell says it is alive, with its verified statement."""
        self.require_local(source_ip)
        if entry.node != signer:
            raise self.refuse("node_mismatch", "a cell announces its own statement only")
        key = (entry.cell, entry.ip)
        old = self.local.get(key)
        if old is None and len(self.local) >= self.limits.max_local:
            raise self.refuse("registry_full", f"{self.limits.max_local} local entries already")
        if old is None or old.entry.shared_fields() != entry.shared_fields():
            self.changed = True  # worth sharing at once (load figures wait for the next refresh)
        self.local[key] = _Local(entry, statement, now_ms)

    def withdraw(self, source_ip: str | None, signer: str, cell: object, ip: object) -> None:
        """A local cell stops cleanly; only the node that announced an entry withdraws it."""
        self.require_local(source_ip)
        if not isinstance(cell, str) or not isinstance(ip, str):
            raise self.refuse("malformed", "a withdrawal names cell and ip")
        current = self.local.get((cell, ip))
        if current is None:
            return
        if current.entry.node != signer:
            raise self.refuse("not_owner", "only the node that announced an entry withdraws it")
        del self.local[(cell, ip)]
        self.changed = True

    def share(self, now_ms: int) -> list[dict[str, Any]]:
        """The statements of this machine's live cells, to broadcast; clears `changed`."""
        self.expire(now_ms)
        self.changed = False
        return [local.statement for local in self.local.values()]

    # ------------------------------------------------------------ other origins

    def table_statements(self, origin: str, data: object) -> tuple[str, list[object]] | None:
        """The via address and raw statements of a table broadcast by `origin` (its verified signer);
        None for our own table coming back. Refused if it claims another origin or is too large."""
        if origin == self.own_node:
            return None
        if not isinstance(data, dict):
            raise self.refuse("malformed", "a table is an object")
        if data.get("origin", origin) != origin:
            raise self.refuse("origin_mismatch", "a table names an origin other than the key that signed it")
        entries, via = data.get("entries"), data.get("ip", "")
        if not isinstance(entries, list):
            raise self.refuse("malformed", "a table holds a list of entries")
        if len(entries) > self.limits.max_per_origin:
            raise self.refuse("too_many_entries", f"a table holds at most {self.limits.max_per_origin} entries")
        return (via if isinstance(via, str) and len(via) <= 64 else ""), entries

    def known(self, digest: bytes) -> Entry | None:
        """The entry of a statement verified before (the same bytes: no second signature check)."""
        entry = self._verified.get(digest)
        if entry is not None:
            self._verified.move_to_end(digest)
        return entry

    def remember(self, digest: bytes, entry: Entry) -> None:
        self._verified[digest] = entry
        while len(self._verified) > self.limits.max_verified:
            self._verified.popitem(last=False)

    def accept_table(self, now_ms: int, origin: str, via: str, entries: list[Entry]) -> None:
        """Replace `origin`'s table with these verified entries (the expired ones left out)."""
        if len(entries) > self.limits.max_per_origin:
            raise self.refuse("too_many_entries", f"a table holds at most {self.limits.max_per_origin} entries")
        live: dict[tuple[str, str, str], Entry] = {}
        for entry in entries:
            if now_ms - entry.ts > self.limits.remote_ttl_ms:
                self.refused["expired"] += 1
                continue
            if entry.ts - now_ms > self.limits.future_ms:
                self.refused["future_dated"] += 1
                continue
            held = live.get(entry.key)
            if held is None or held.ts < entry.ts:
                live[entry.key] = entry
        if not self._room(origin, len(live)):
            self.expire(now_ms)  # only when full: what has expired makes room before anyone is refused
            if not self._room(origin, len(live)):
                raise self.refuse("registry_full", "the registry holds as many origins and entries as it may")
        old = self.remote.get(origin)
        held_elsewhere = self._remote_total - (len(old.entries) if old else 0)
        self._remote_total = held_elsewhere + len(live)
        if live:
            self.remote[origin] = _Origin(via, tuple(live.values()))
        else:
            self.remote.pop(origin, None)

    def _room(self, origin: str, count: int) -> bool:
        old = self.remote.get(origin)
        if old is None and count and len(self.remote) >= self.limits.max_origins:
            return False
        return self._remote_total - (len(old.entries) if old else 0) + count <= self.limits.max_remote

    def remote_entries(self) -> int:
        return self._remote_total

    # ------------------------------------------------------------ time and listing

    def expire(self, now_ms: int) -> None:
        """Drop local entries no longer announced and remote statements past their lifetime."""
        for key, local in list(self.local.items()):
            if now_ms - local.seen_ms > self.limits.local_ttl_ms:
                del self.local[key]
                self.changed = True
        for origin, table in list(self.remote.items()):
            live = tuple(e for e in table.entries if now_ms - e.ts <= self.limits.remote_ttl_ms)
            self._remote_total -= len(table.entries) - len(live)
            if not live:
                del self.remote[origin]
            elif len(live) < len(table.entries):
                self.remote[origin] = _Origin(table.via, live)

    def services(self, now_ms: int, cell: str | None = None) -> list[dict[str, Any]]:
        """Every live entry once (the newest statement of each cell, ip and node), sorted."""
        self.expire(now_ms)
        merged: dict[tuple[str, str, str], tuple[Entry, str]] = {}
        for table in self.remote.values():
            for entry in table.entries:
                held = merged.get(entry.key)
                if held is None or held[0].ts < entry.ts:
                    merged[entry.key] = (entry, table.via)
        for local in self.local.values():
            merged[local.entry.key] = (local.entry, self.own_ip)
        return [
            entry.listing(via, now_ms)
            for key, (entry, via) in sorted(merged.items())
            if cell is None or entry.cell == cell
        ]

    def figures(self, now_ms: int) -> dict[str, Any]:
        """Sizes and refusals, for the monPort."""
        self.expire(now_ms)
        return {
            "local": len(self.local),
            "origins": len(self.remote),
            "remote": self.remote_entries(),
            "refused": dict(self.refused),
        }
