"""A holder's directory entries on disk: one small file per address, the newest entry it was given.

At most `max_entries` addresses (a new one beyond is refused: ``holder_full``); only their names are
kept in memory and an entry is read back on each lookup (each file is under `MAX_ENTRY_BYTES`). A
file that does not read back or does not verify is set aside (renamed ``.bad``) rather than trusted.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ...mail.directory import MAX_ENTRY_BYTES, Entry, check_address, check_entry
from ...mail.errors import MailError

log = logging.getLogger("borgusb.mail")


def _is_address(name: str) -> bool:
    try:
        return bool(check_address(name))
    except MailError:
        return False


class DirectoryStore:
    """Every directory entry this holder keeps, by address, under `root`."""

    def __init__(self, root: Path, max_entries: int) -> None:
        self.root = root
        self.max_entries = max_entries
        root.mkdir(parents=True, exist_ok=True)
        self.addresses = {p.stem for p in root.glob("D*.json") if _is_address(p.stem)}

    def _path(self, addr: str) -> Path:
        return self.root / f"{addr}.json"

    def get(self, addr: str) -> Entry | None:
        if addr not in self.addresses:
            return None
        path = self._path(addr)
        try:
            with open(path, "rb") as f:
                entry = check_entry(json.loads(f.read(MAX_ENTRY_BYTES)))
            if entry.addr != addr:
                raise ValueError("the file names another address")
        except (OSError, ValueError, MailError) as exc:
            log.warning("directory file %s unreadable (%s): set aside", path, exc)
            path.rename(path.with_suffix(".bad"))
            self.addresses.discard(addr)
            return None
        return entry

    def full(self, addr: str) -> bool:
        """True when `addr` is new here and this holder keeps `max_entries` already."""
        return addr not in self.addresses and len(self.addresses) >= self.max_entries

    def put(self, entry: Entry) -> None:
        path = self._path(entry.addr)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(entry.to_dict(), f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self.addresses.add(entry.addr)
