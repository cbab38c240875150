"""mailTreeCell: keeps recipients' inboxes and is the door a person's CLI or conduit sends through.

The protocol is `borgusb.mail` (docs/mail.md); this cell only carries it, and sees ciphertext only.

* **Holders.** A recipient's inbox is kept by the `r` winners of the placement lottery for
  ``"borgusb.mail:" + recipient`` among the members of this cell's tree, as the tree root's member
  table lists them (re-read every second, as peerPaysCell does): every cell computes the same
  holder set, so a recipient who is away for days finds their mail on the same holders.
* **Entry receptors** (on the person's local cell): ``mail.send`` (a sender-signed message: checked,
  then deposited with every holder in parallel; the reply counts who kept it) and ``mail.ask`` (a
  recipient-signed request forwarded to every holder; the reply is their listings, which the
  recipient's side checks and merges: `borgusb.mail.inbox.merge`).
* **Holder receptors**: ``mail.deposit`` and ``mail.inbox``, which apply `borgusb.mail.inbox.Inbox`'s
  rules (fresh, deduplicated, tombstones, per-sender rate, bounded size) and persist to disk.
* **The directory** (`borgusb.mail.directory`): a person's signed entry binding their address to their
  key, kept by the `r` lottery winners for ``"borgusb.mail.dir:" + address``. ``mail.publish`` and
  ``mail.lookup`` (entry) fan out to ``mail.dir_put`` and ``mail.dir_get`` (holder); the reader checks
  every answer and takes the newest, and after a lookup the newest is handed to holders that lack it.

Every refusal is a `RequestError` whose reason is the mail core's word, counted as ``mail_refused:<reason>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from ... import envelope
from ...dna import CellDNA
from ...mail.directory import Entry, RateWindow, accept, behind, check_address, check_entry, newest
from ...mail.errors import MailError, RateLimited
from ...mail.inbox import Limits, handoffs
from ...mail.message import Message, check_message
from ...mail.request import Request, check_request
from ...net.peer import PeerError, PeerRejected
from ...shard import placement
from ..kit import RequestError, receptor
from ..kit.holdercell import HolderCell
from .client import MailClient
from .dirstore import DirectoryStore
from .settings import MailSettings
from .store import InboxStore

log = logging.getLogger("borgusb.mail")

LOTTERY_PREFIX = "borgusb.mail:"
DIR_PREFIX = "borgusb.mail.dir:"
_STATUS = {
    "not_holder": 409,
    "inbox_full": 507,
    "holder_full": 507,
    "no_holder": 503,
    "rate_limited": 429,
    "too_large": 413,
    "rollback": 409,
}


def holders_of(who: str, members: dict[str, str], r: int) -> list[str]:
    """The r holders of `who`'s inbox among the members (node key -> ip), best first."""
    return placement.choose(LOTTERY_PREFIX + who, members, r)


def dir_holders_of(addr: str, members: dict[str, str], r: int) -> list[str]:
    """The r holders of an address's directory entry among the members, best first."""
    return placement.choose(DIR_PREFIX + addr, members, r)


class MailCell(HolderCell):
    """A Cell that holds inboxes and forwards a person's mail to the right holders."""

    settings: MailSettings

    def __init__(self, dna: CellDNA, ip: str, **kw: Any) -> None:
        settings = kw.get("settings")
        if not isinstance(settings, MailSettings):
            settings = kw["settings"] = MailSettings.from_sources()
        super().__init__(dna, ip, data_root=settings.data_root, **kw)
        self.r = settings.r
        self.timeout_s = settings.timeout_ms / 1000
        limits = Limits(max_messages=settings.max_messages, rate_count=settings.rate_count)
        self.mailboxes = InboxStore(self.records_dir / "mail", limits, settings.max_inboxes)
        self.directory = DirectoryStore(self.records_dir / "mail-directory", settings.max_entries)
        self.publishes = RateWindow(settings.publish_rate, 60_000)  # per address, as a holder
        self.lookups = RateWindow(settings.lookup_rate, 60_000)  # per asking key, as an entry cell

    def holders(self, who: str) -> list[str]:
        return holders_of(who, self.members, self.r)

    def dir_holders(self, addr: str) -> list[str]:
        return dir_holders_of(addr, self.members, self.r)

    @property
    def view(self) -> str:
        return hashlib.sha256("\n".join(sorted(self.members)).encode()).hexdigest()[:32]

    # ------------------------------------------------------------ helpers

    def _refuse(self, exc: MailError) -> RequestError:
        self.counters[f"mail_refused:{exc.reason}"] += 1
        return RequestError(exc.reason, str(exc), _STATUS.get(exc.reason, 400))

    def _message(self, payload: Any) -> Message:
        try:
            return check_message(payload.get("m") if isinstance(payload, dict) else None)
        except MailError as exc:
            raise self._refuse(exc) from None

    def _request(self, payload: Any) -> Request:
        try:
            return check_request(payload.get("q") if isinstance(payload, dict) else None, self.clock.now_ms())
        except MailError as exc:
            raise self._refuse(exc) from None

    async def _must_hold(self, who: str, pick: Callable[[str], list[str]] | None = None) -> None:
        pick = pick or self.holders
        if self.key.public_key_hex not in pick(who):
            await self.refresh_view()  # the asker may have read the root's table a moment sooner
            if self.key.public_key_hex not in pick(who):
                self.counters["mail_refused:not_holder"] += 1
                raise RequestError("not_holder", f"{self.key.public_key_hex[:16]} does not hold this inbox", 409)

    async def _each_holder(
        self, holders: list[str], local: Any, remote: Any
    ) -> tuple[list[dict[str, Any]], Counter[str]]:
        """Call every one of `holders` in parallel (this cell directly): replies, and refusals by reason."""

        async def one(holder: str) -> dict[str, Any] | str:
            try:
                if holder == self.key.public_key_hex:
                    return await local()
                client = MailClient(self.peers, self.members[holder], pubkey=holder)
                reply = await asyncio.wait_for(remote(client), self.timeout_s)
                return reply if isinstance(reply, dict) else "bad_reply"
            except RequestError as exc:
                return exc.reason
            except PeerRejected as exc:
                return exc.reason
            except TimeoutError:
                return "timeout"
            except PeerError:
                return "unreachable"

        results = await asyncio.gather(*(one(h) for h in holders))
        refused = Counter(r for r in results if isinstance(r, str))
        return [r for r in results if isinstance(r, dict)], refused

    def _none_answered(self, replies: list[dict[str, Any]], refused: Counter[str]) -> None:
        """Refuse with the holders' most common reason (or ``no_holder``) when none of them answered."""
        if not replies:
            reason = refused.most_common(1)[0][0] if refused else "no_holder"
            self.counters[f"mail_refused:{reason}"] += 1
            raise RequestError(reason, f"no holder took it ({dict(refused)})", _STATUS.get(reason, 503))

    # ------------------------------------------------------------ entry receptors

    @receptor("mail.send")
    async def _r_send(self, env: envelope.Envelope) -> Any:
        msg = self._message(env.payload)
        doc = msg.to_dict()
        replies, refused = await self._each_holder(
            self.holders(msg.recipient), lambda: self._deposit_local(msg), lambda c: c.deposit(doc)
        )
        holders = len(replies) + sum(refused.values())
        self._none_answered(replies, refused)
        self.counters["mail_sent"] += 1
        return {"id": msg.id, "stored": len(replies), "holders": holders, "refused": dict(refused)}

    @receptor("mail.ask")
    async def _r_ask(self, env: envelope.Envelope) -> Any:
        req = self._request(env.payload)
        replies, refused = await self._each_holder(
            self.holders(req.who), lambda: self._inbox_local(req), lambda c: c.inbox(req.doc)
        )
        self._none_answered(replies, refused)
        if req.op == "list":
            self._spawn(self._hand_off(req.who, replies))
        return {"replies": replies, "holders": len(replies) + sum(refused.values()), "refused": dict(refused)}

    async def _hand_off(self, who: str, replies: list[dict[str, Any]]) -> None:
        """Pass each message one holder has and another lacks on to the one that lacks it (after
        a membership change a new holder starts empty), a bounded number per read."""
        for holder, doc in handoffs(who, replies):
            try:
                if holder == self.key.public_key_hex:
                    await self._deposit_local(check_message(doc), handoff=True)
                elif holder in self.members:
                    client = MailClient(self.peers, self.members[holder], pubkey=holder)
                    await asyncio.wait_for(client.deposit(doc, handoff=True), self.timeout_s)
                self.counters["mail_handoff"] += 1
            except (RequestError, PeerError, TimeoutError, MailError):
                self.counters["mail_handoff_failed"] += 1

    # ------------------------------------------------------------ holder receptors

    async def _deposit_local(self, msg: Message, handoff: bool = False) -> dict[str, Any]:
        await self._must_hold(msg.recipient)
        inbox = self.mailboxes.get_or_make(msg.recipient)
        if inbox is None:
            self.counters["mail_refused:holder_full"] += 1
            raise RequestError("holder_full", "this holder keeps as many inboxes as it can", 507)
        try:
            status = inbox.deposit(self.clock.now_ms(), msg, handoff)
        except MailError as exc:
            raise self._refuse(exc) from None
        if status == "stored":
            self.mailboxes.save(inbox)
        self.counters[f"mail_deposit:{status}"] += 1
        return {"id": msg.id, "status": status}

    @receptor("mail.deposit")
    async def _r_deposit(self, env: envelope.Envelope) -> Any:
        msg = self._message(env.payload)
        handoff = env.payload.get("handoff") is True
        if handoff and env.signer not in self.members:  # else anyone could pass old mail off as a hand-off
            self.counters["mail_refused:not_member"] += 1
            raise RequestError("not_member", "only a member of the mail tree hands messages off", 403)
        return await self._deposit_local(msg, handoff)

    async def _inbox_local(self, req: Request) -> dict[str, Any]:
        await self._must_hold(req.who)
        inbox = self.mailboxes.get(req.who) if req.op == "list" else self.mailboxes.get_or_make(req.who)
        if inbox is None:
            return {"holder": self.key.public_key_hex, "messages": [], "read": [], "deleted": [], "known": []}
        if req.op != "list":
            try:
                inbox.apply(self.clock.now_ms(), req)
            except MailError as exc:
                raise self._refuse(exc) from None
            self.mailboxes.save(inbox)
        self.counters[f"mail_inbox:{req.op}"] += 1
        return {"holder": self.key.public_key_hex, **inbox.listing()}

    @receptor("mail.inbox")
    async def _r_inbox(self, env: envelope.Envelope) -> Any:
        return await self._inbox_local(self._request(env.payload))

    # ------------------------------------------------------------ the directory

    def _entry(self, payload: Any) -> Entry:
        try:
            return check_entry(payload.get("e") if isinstance(payload, dict) else None)
        except MailError as exc:
            raise self._refuse(exc) from None

    def _address(self, payload: Any) -> str:
        try:
            return check_address(payload.get("addr") if isinstance(payload, dict) else None)
        except MailError as exc:
            raise self._refuse(exc) from None

    @receptor("mail.publish")
    async def _r_publish(self, env: envelope.Envelope) -> Any:
        entry = self._entry(env.payload)
        doc = entry.to_dict()
        replies, refused = await self._each_holder(
            self.dir_holders(entry.addr), lambda: self._dir_put_local(entry), lambda c: c.dir_put(doc)
        )
        self._none_answered(replies, refused)
        self.counters["mail_published"] += 1
        holders = len(replies) + sum(refused.values())
        return {
            "addr": entry.addr,
            "id": entry.id,
            "stored": len(replies),
            "holders": holders,
            "refused": dict(refused),
        }

    @receptor("mail.lookup")
    async def _r_lookup(self, env: envelope.Envelope) -> Any:
        addr = self._address(env.payload)
        if not self.lookups.allow(env.signer, self.clock.now_ms()):
            raise self._refuse(RateLimited("too many directory lookups from this key; slow down"))
        replies, refused = await self._each_holder(
            self.dir_holders(addr), lambda: self._dir_get_local(addr), lambda c: c.dir_get(addr)
        )
        self._none_answered(replies, refused)
        best, _ = newest(addr, replies)
        if best is not None:
            self._spawn(self._hand_entry_off(best, behind(best, replies)))
        return {
            "addr": addr,
            "replies": replies,
            "holders": len(replies) + sum(refused.values()),
            "refused": dict(refused),
        }

    async def _hand_entry_off(self, entry: Entry, holders: list[str]) -> None:
        """Give the newest entry to the holders that answered without it (new to the set, or behind)."""
        for holder in holders:
            try:
                if holder == self.key.public_key_hex:
                    await self._dir_put_local(entry, handoff=True)
                elif holder in self.members:
                    client = MailClient(self.peers, self.members[holder], pubkey=holder)
                    await asyncio.wait_for(client.dir_put(entry.to_dict(), handoff=True), self.timeout_s)
                self.counters["mail_dir_handoff"] += 1
            except (RequestError, PeerError, TimeoutError, MailError):
                self.counters["mail_dir_handoff_failed"] += 1

    async def _dir_put_local(self, entry: Entry, handoff: bool = False) -> dict[str, Any]:
        await self._must_hold(entry.addr, self.dir_holders)
        if not handoff and not self.publishes.allow(entry.addr, self.clock.now_ms()):
            raise self._refuse(RateLimited("this address published too many entries this minute"))
        if self.directory.full(entry.addr):
            self.counters["mail_refused:holder_full"] += 1
            raise RequestError("holder_full", "this holder keeps as many directory entries as it can", 507)
        try:
            status = accept(self.clock.now_ms(), self.directory.get(entry.addr), entry, handoff)
        except MailError as exc:
            raise self._refuse(exc) from None
        if status == "stored":
            self.directory.put(entry)
        self.counters[f"mail_dir:{status}"] += 1
        return {"addr": entry.addr, "id": entry.id, "status": status}

    @receptor("mail.dir_put")
    async def _r_dir_put(self, env: envelope.Envelope) -> Any:
        entry = self._entry(env.payload)
        handoff = env.payload.get("handoff") is True
        if handoff and env.signer not in self.members:  # else anyone could pass an old entry off as a hand-off
            self.counters["mail_refused:not_member"] += 1
            raise RequestError("not_member", "only a member of the mail tree hands entries off", 403)
        return await self._dir_put_local(entry, handoff)

    async def _dir_get_local(self, addr: str) -> dict[str, Any]:
        await self._must_hold(addr, self.dir_holders)
        entry = self.directory.get(addr)
        self.counters["mail_dir:get"] += 1
        return {"holder": self.key.public_key_hex, "entry": entry.to_dict() if entry else None}

    @receptor("mail.dir_get")
    async def _r_dir_get(self, env: envelope.Envelope) -> Any:
        return await self._dir_get_local(self._address(env.payload))

    # ------------------------------------------------------------ monitoring

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc["mail"] = {
            "view": self.view,
            "members": len(self.members),
            "r": self.r,
            "inboxes": len(self.mailboxes.keys),
            "cached": len(self.mailboxes.inboxes),
            "entries": len(self.directory.addresses),
        }
        return doc
