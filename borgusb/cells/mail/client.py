"""MailClient: what the CLI, the conduit and other mail cells call on a mailTreeCell.

`post` and `ask` go to the person's local cell, which fans out to the recipient's holders;
`deposit` and `inbox` are holder requests (pass ``pubkey=`` the holder's node key).
"""

from __future__ import annotations

from typing import Any

from ...mail.directory import Entry, newest
from ..kit import CellClient


def _doc(reply: Any) -> dict[str, Any]:
    return reply if isinstance(reply, dict) else {}


class MailClient(CellClient):
    cell = "mailTreeCell"

    async def post(self, message: dict[str, Any]) -> dict[str, Any]:
        """Leave a sender-signed message with its recipient's holders: ``{"id", "stored", "holders", "refused"}``."""
        return _doc(await self.call("mail.send", {"m": message}))

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """A recipient-signed request to every holder of their inbox: ``{"replies": [...], "holders", "refused"}``
        (each reply is one holder's listing; `borgusb.mail.inbox.merge` checks and unions them)."""
        return _doc(await self.call("mail.ask", {"q": request}))

    async def deposit(self, message: dict[str, Any], *, handoff: bool = False) -> dict[str, Any]:
        """One holder: keep the message (``{"status": "stored" | "duplicate"}``); ``handoff``: a copy
        another holder kept (only a member of the mail tree may pass one on)."""
        return _doc(await self.call("mail.deposit", {"m": message, "handoff": handoff}))

    async def inbox(self, request: dict[str, Any]) -> dict[str, Any]:
        """One holder: carry out the request and answer its listing of the inbox."""
        return _doc(await self.call("mail.inbox", {"q": request}))

    async def publish(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Leave a person-signed directory entry with its address's holders: ``{"addr", "id", "stored",
        "holders", "refused"}``."""
        return _doc(await self.call("mail.publish", {"e": entry}))

    async def lookup(self, addr: str) -> dict[str, Any]:
        """Every holder's answer for an address: ``{"addr", "replies": [{"holder", "entry"}, ...], ...}``
        (unchecked: `resolve` checks them)."""
        return _doc(await self.call("mail.lookup", {"addr": addr}))

    async def resolve(self, addr: str) -> tuple[Entry | None, int]:
        """The newest entry for `addr` that verifies here (None: no holder has one), and how many
        answers did not verify: a lying holder can hide an entry but not forge one."""
        replies = (await self.lookup(addr)).get("replies")
        return newest(addr, replies if isinstance(replies, list) else [])

    async def dir_put(self, entry: dict[str, Any], *, handoff: bool = False) -> dict[str, Any]:
        """One holder: keep the entry if it is the newest (``{"status": "stored" | "duplicate"}``)."""
        return _doc(await self.call("mail.dir_put", {"e": entry, "handoff": handoff}))

    async def dir_get(self, addr: str) -> dict[str, Any]:
        """One holder: ``{"holder", "entry": the newest it keeps, or None}``."""
        return _doc(await self.call("mail.dir_get", {"addr": addr}))
