"""A holder's inboxes on disk: one JSON file per recipient, written whole and atomically.

An inbox is bounded (`Limits.max_messages` messages, `Limits.max_bytes` of them), so a change
rewrites its file. Only the most recently used `cached` inboxes are kept in memory (each is on
disk already, so dropping one costs nothing); a file that does not read back or does not verify
is set aside (renamed ``.bad``) rather than trusted.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from pathlib import Path

from ...ledger.accounts import is_account
from ...mail.errors import MailError
from ...mail.inbox import Inbox, Limits

log = logging.getLogger("borgusb.mail")


class InboxStore:
    """Every inbox this holder keeps: their names in memory, their contents under `root`."""

    def __init__(self, root: Path, limits: Limits, max_inboxes: int, cached: int = 256) -> None:
        self.root = root
        self.limits = limits
        self.max_inboxes = max_inboxes
        self.cached = cached
        root.mkdir(parents=True, exist_ok=True)
        self.keys = {p.stem for p in root.glob("*.json") if is_account(p.stem)}
        self.inboxes: OrderedDict[str, Inbox] = OrderedDict()  # the recently used ones

    def _path(self, who: str) -> Path:
        return self.root / f"{who}.json"

    def get(self, who: str) -> Inbox | None:
        inbox = self.inboxes.get(who)
        if inbox is not None:
            self.inboxes.move_to_end(who)
            return inbox
        if who not in self.keys:
            return None
        path = self._path(who)
        try:
            inbox = Inbox.from_doc(json.loads(path.read_text(encoding="utf-8")), self.limits)
            if inbox.who != who:
                raise ValueError("the file names another recipient")
        except (OSError, ValueError, KeyError, TypeError, MailError) as exc:
            log.warning("inbox file %s unreadable (%s): set aside", path, exc)
            path.rename(path.with_suffix(".bad"))
            self.keys.discard(who)
            return None
        return self._cache(inbox)

    def _cache(self, inbox: Inbox) -> Inbox:
        self.inboxes[inbox.who] = inbox
        while len(self.inboxes) > self.cached:
            self.inboxes.popitem(last=False)
        return inbox

    def get_or_make(self, who: str) -> Inbox | None:
        """The recipient's inbox, made if there is room (None: this holder keeps `max_inboxes` already)."""
        inbox = self.get(who)
        if inbox is None and len(self.keys) < self.max_inboxes and is_account(who):
            inbox = self._cache(Inbox(who, self.limits))
            self.save(inbox)
        return inbox

    def save(self, inbox: Inbox) -> None:
        path = self._path(inbox.who)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(inbox.to_doc(), f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self.keys.add(inbox.who)
