"""One recipient's inbox as a holder keeps it, and the merge of what several holders answer. No I/O.

A holder keeps every message addressed to the recipient that passes its limits: fresh (signed
within `Limits.max_age_ms`: an old message replayed after it was deleted is stale), not a
duplicate (same id: stored once), not deleted (a tombstone outlives the freshness window), within
the per-sender rate and the inbox size. The recipient's signed requests mark messages read
(which also makes their senders known) and delete them. Holders are not trusted: `merge`
checks every message again and unions what a quorum of them says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..keys import SigningKey
from .errors import Deleted, FutureDated, InboxFull, MailError, NotForYou, RateLimited, Stale
from .message import Message, check_message, open_message
from .request import Request


@dataclass(frozen=True)
class Limits:
    max_messages: int = 1000  # per recipient
    max_bytes: int = 8 * 1024 * 1024  # of sealed messages, per recipient
    rate_count: int = 20  # messages from one sender to one recipient ...
    rate_window_ms: int = 60_000  # ... per window
    max_age_ms: int = 10 * 60_000  # a message is deposited within this of its signing
    max_future_ms: int = 30_000
    max_known: int = 4096
    max_deleted: int = 20_000


class Inbox:
    """The messages of one recipient on one holder."""

    def __init__(self, who: str, limits: Limits) -> None:
        self.who = who
        self.limits = limits
        self.messages: dict[str, Message] = {}
        self.read: set[str] = set()
        self.deleted: dict[str, int] = {}  # id -> when it stops mattering (ms): after, a replay is stale
        self.known: set[str] = set()
        self.recent: dict[str, list[int]] = {}  # sender -> deposit times within the rate window

    def deposit(self, now_ms: int, msg: Message, handoff: bool = False) -> str:
        """``"stored"`` or ``"duplicate"``; else a `MailError` with the refusal's reason.

        A hand-off (a copy another holder of this inbox kept, passed on after the holder set
        changed) may be old and skips the freshness and rate checks; tombstones and bounds hold."""
        lim = self.limits
        if msg.recipient != self.who:
            raise NotForYou("this inbox is another key's")
        if msg.id in self.messages:
            return "duplicate"
        if msg.id in self.deleted:
            raise Deleted("the recipient deleted this message")
        if not handoff and now_ms - msg.ts > lim.max_age_ms:
            raise Stale(f"signed {now_ms - msg.ts} ms ago (at most {lim.max_age_ms})")
        if not handoff and msg.ts - now_ms > lim.max_future_ms:
            raise FutureDated(f"dated {msg.ts - now_ms} ms ahead (at most {lim.max_future_ms})")
        times = [t for t in self.recent.get(msg.sender, []) if now_ms - t < lim.rate_window_ms]
        if not handoff and len(times) >= lim.rate_count:
            raise RateLimited(f"{lim.rate_count} messages from this sender in {lim.rate_window_ms} ms already")
        if len(self.messages) >= lim.max_messages:
            raise InboxFull(f"this inbox holds {lim.max_messages} messages")
        if self.size() + len(msg.sealed) // 2 > lim.max_bytes:
            raise InboxFull(f"this inbox holds {lim.max_bytes} bytes of messages")
        self.recent[msg.sender] = [*times, now_ms]
        self.messages[msg.id] = msg
        return "stored"

    def size(self) -> int:
        """Bytes of sealed messages held."""
        return sum(len(m.sealed) for m in self.messages.values()) // 2

    def apply(self, now_ms: int, req: Request) -> None:
        """A checked request of the recipient: mark read or delete (listing changes nothing)."""
        if req.who != self.who:
            raise NotForYou("this inbox is another key's")
        if req.op == "read":
            for i in req.ids:
                if i in self.messages:
                    self.read.add(i)
                    if len(self.known) < self.limits.max_known:
                        self.known.add(self.messages[i].sender)
        elif req.op == "rm":
            for i in req.ids:
                msg = self.messages.pop(i, None)
                self.read.discard(i)
                self.deleted[i] = (msg.ts if msg else now_ms) + self.limits.max_age_ms + self.limits.max_future_ms
            self.prune(now_ms)

    def prune(self, now_ms: int) -> None:
        """Drop tombstones no replay can need (past the freshness window), oldest first beyond the bound."""
        self.deleted = {i: t for i, t in self.deleted.items() if t > now_ms}
        while len(self.deleted) > self.limits.max_deleted:
            del self.deleted[min(self.deleted, key=self.deleted.__getitem__)]

    def listing(self) -> dict[str, Any]:
        """What a holder answers to ``list``."""
        return {
            "messages": [m.to_dict() for m in sorted(self.messages.values(), key=lambda m: (m.ts, m.id))],
            "read": sorted(self.read),
            "deleted": sorted(self.deleted),
            "known": sorted(self.known),
        }

    def to_doc(self) -> dict[str, Any]:
        return {"who": self.who, **self.listing(), "deleted": dict(self.deleted)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any], limits: Limits) -> Inbox:
        """An inbox read back from this holder's own disk (checked again all the same)."""
        inbox = cls(str(doc["who"]), limits)
        for m in doc.get("messages", []):
            msg = check_message(m)
            if msg.recipient == inbox.who:
                inbox.messages[msg.id] = msg
        inbox.read = {i for i in doc.get("read", []) if i in inbox.messages}
        inbox.deleted = {str(i): int(t) for i, t in dict(doc.get("deleted", {})).items()}
        inbox.known = {str(k) for k in doc.get("known", [])}
        return inbox


def handoffs(who: str, listings: Iterable[Any], limit: int = 64) -> list[tuple[str, dict[str, Any]]]:
    """(holder, message) for each message one holder answered and another lacks, that no holder deleted:
    what an entry cell passes on so a holder new to the set (a membership change) catches up."""
    have: dict[str, set[str]] = {}
    docs: dict[str, dict[str, Any]] = {}
    deleted: set[str] = set()
    for doc in listings:
        if not isinstance(doc, dict) or not isinstance(doc.get("holder"), str):
            continue
        ids = have.setdefault(doc["holder"], set())
        for m in doc["messages"] if isinstance(doc.get("messages"), list) else []:
            try:
                msg = check_message(m)
            except MailError:
                continue
            if msg.recipient == who:
                ids.add(msg.id)
                docs[msg.id] = msg.to_dict()
        if isinstance(doc.get("deleted"), list):
            deleted.update(i for i in doc["deleted"] if isinstance(i, str))
    out = [(h, docs[i]) for h, ids in sorted(have.items()) for i in sorted(docs.keys() - ids - deleted)]
    return out[:limit]


@dataclass(frozen=True, slots=True)
class Entry:
    """One message of the merged inbox, as the recipient's CLI or conduit shows it."""

    msg: Message
    read: bool
    new_sender: bool  # no holder has seen the recipient read anything from this sender


def merge(who: str, listings: Iterable[Any]) -> tuple[list[Entry], int]:
    """The union of several holders' listings, oldest first, and how many bad items were dropped.

    Every message is checked again (a holder may lie): a bad signature, another recipient or a
    malformed document is dropped and counted; a message any holder has a tombstone for is gone."""
    messages: dict[str, Message] = {}
    read: set[str] = set()
    deleted: set[str] = set()
    known: set[str] = set()
    dropped = 0
    for doc in listings:
        if not isinstance(doc, dict):
            dropped += 1
            continue
        for m in doc.get("messages", []) if isinstance(doc.get("messages"), list) else []:
            try:
                msg = check_message(m)
            except MailError:
                dropped += 1
                continue
            if msg.recipient != who:
                dropped += 1
                continue
            messages[msg.id] = msg
        for name, into in (("read", read), ("deleted", deleted), ("known", known)):
            values = doc.get(name)
            if isinstance(values, list):
                into.update(v for v in values if isinstance(v, str))
    entries = [
        Entry(m, m.id in read, m.sender not in known)
        for m in sorted(messages.values(), key=lambda m: (m.ts, m.id))
        if m.id not in deleted
    ]
    return entries, dropped


def opened(key: SigningKey, entries: list[Entry]) -> list[dict[str, Any]]:
    """The merged inbox as the recipient's side shows it: each entry opened with `key`, or why not."""
    out = []
    for e in entries:
        doc: dict[str, Any] = {
            "id": e.msg.id,
            "from": e.msg.sender,
            "ts": e.msg.ts,
            "re": e.msg.re,
            "read": e.read,
            "new_sender": e.new_sender,
        }
        try:
            c = open_message(key, e.msg)
            doc.update(subject=c.subject, body=c.body, attachments=list(c.attachments))
        except MailError as exc:
            doc.update(error=exc.reason)
        out.append(doc)
    return out
