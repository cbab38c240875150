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

Every refusal is a `RequestError` whose reason is the mail core's word, counted as ``mail_refused:<reason>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from typing import Any

from ... import envelope
from ...dna import CellDNA
from ...mail.errors import MailError
from ...mail.inbox import Limits, handoffs
from ...mail.message import Message, check_message
from ...mail.request import Request, check_request
from ...net.peer import PeerError, PeerRejected
from ...shard import placement
from ..kit import RequestError, receptor
from ..kit.holdercell import HolderCell
from .client import MailClient
from .settings import MailSettings
from .store import InboxStore

log = logging.getLogger("borgusb.mail")

LOTTERY_PREFIX = "borgusb.mail:"
_STATUS = {"not_holder": 409, "inbox_full": 507, "no_holder": 503, "rate_limited": 429, "too_large": 413}


def holders_of(who: str, members: dict[str, str], r: int) -> list[str]:
    """The r holders of `who`'s inbox among the members (node key -> ip), best first."""
    return placement.choose(LOTTERY_PREFIX + who, members, r)


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

    def holders(self, who: str) -> list[str]:
        return holders_of(who, self.members, self.r)

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

    async def _must_hold(self, who: str) -> None:
        if self.key.public_key_hex not in self.holders(who):
            await self.refresh_view()  # the asker may have read the root's table a moment sooner
            if self.key.public_key_hex not in self.holders(who):
                self.counters["mail_refused:not_holder"] += 1
                raise RequestError("not_holder", f"{self.key.public_key_hex[:16]} does not hold this inbox", 409)

    async def _each_holder(self, who: str, local: Any, remote: Any) -> tuple[list[dict[str, Any]], Counter[str]]:
        """Call every holder of `who` in parallel (this cell directly): replies, and refusals by reason."""

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

        results = await asyncio.gather(*(one(h) for h in self.holders(who)))
        refused = Counter(r for r in results if isinstance(r, str))
        return [r for r in results if isinstance(r, dict)], refused

    # ------------------------------------------------------------ entry receptors

    @receptor("mail.send")
    async def _r_send(self, env: envelope.Envelope) -> Any:
        msg = self._message(env.payload)
        doc = msg.to_dict()
        replies, refused = await self._each_holder(
            msg.recipient, lambda: self._deposit_local(msg), lambda c: c.deposit(doc)
        )
        holders = len(replies) + sum(refused.values())
        if not replies:
            reason = refused.most_common(1)[0][0] if refused else "no_holder"
            self.counters[f"mail_refused:{reason}"] += 1
            raise RequestError(reason, f"no holder kept the message ({dict(refused)})", _STATUS.get(reason, 503))
        self.counters["mail_sent"] += 1
        return {"id": msg.id, "stored": len(replies), "holders": holders, "refused": dict(refused)}

    @receptor("mail.ask")
    async def _r_ask(self, env: envelope.Envelope) -> Any:
        req = self._request(env.payload)
        replies, refused = await self._each_holder(req.who, lambda: self._inbox_local(req), lambda c: c.inbox(req.doc))
        if not replies:
            reason = refused.most_common(1)[0][0] if refused else "no_holder"
            self.counters[f"mail_refused:{reason}"] += 1
            raise RequestError(reason, f"no holder answered ({dict(refused)})", _STATUS.get(reason, 503))
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

    # ------------------------------------------------------------ monitoring

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc["mail"] = {
            "view": self.view,
            "members": len(self.members),
            "r": self.r,
            "inboxes": len(self.mailboxes.keys),
            "cached": len(self.mailboxes.inboxes),
        }
        return doc
