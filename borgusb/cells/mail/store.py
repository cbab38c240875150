"""A holder's inboxes on disk: one JSON file per recipient, written whole and atomically.

An inbox is small (bounded by `Limits.max_messages` of bounded messages), so a change rewrites its
file; a file that does not read back is set aside (renamed ``.bad``) rather than trusted.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ...ledger.accounts import is_account
from ...mail.errors import MailError
from ...mail.inbox import Inbox, Limits

log = logging.getLogger("borgusb.mail")


class InboxStore:
    """Every inbox this holder keeps, in memory and under `root`."""

    def __init__(self, root: Path, limits: Limits, max_inboxes: int) -> None:
        self.root = root
        self.limits = limits
        self.max_inboxes = max_inboxes
        root.mkdir(parents=True, exist_ok=True)
        self.inboxes: dict[str, Inbox] = {}
        for path in sorted(root.glob("*.json"))[:max_inboxes]:
            try:
                inbox = Inbox.from_doc(json.loads(path.read_text(encoding="utf-8")), limits)
            except (OSError, ValueError, KeyError, TypeError, MailError) as exc:
                log.warning("inbox file %s unreadable (%s): set aside", path, exc)
                path.rename(path.with_suffix(".bad"))
                continue
            self.inboxes[inbox.who] = inbox

    def get(self, who: str) -> Inbox | None:
        return self.inboxes.get(who)

    def get_or_make(self, who: str) -> Inbox | None:
        """The recipient's inbox, made if there is room (None: this holder keeps `max_inboxes` already)."""
        inbox = self.inboxes.get(who)
        if inbox is None and len(self.inboxes) < self.max_inboxes and is_account(who):
            inbox = self.inboxes[who] = Inbox(who, self.limits)
        return inbox

    def save(self, inbox: Inbox) -> None:
        path = self.root / f"{inbox.who}.json"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(inbox.to_doc(), f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
