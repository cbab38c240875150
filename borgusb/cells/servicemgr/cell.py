"""serviceMgrCell: the live registry of which nodes run which cells (the I/O around `registry.Registry`).

How entries flow:

1. Every cell process announces itself once per `ANNOUNCE_MS` to the serviceMgr on its own IP
   (`svc.announce`, carrying the cell's own signed `svc.entry` statement: cell, ip, ports, status,
   load), and withdraws on a clean stop (`svc.withdraw`). Both are taken only from this machine:
   the TCP peer must be this serviceMgr's own address.
2. The serviceMgr keeps these *local* entries; one not refreshed for `LOCAL_TTL_MS` (3 announce
   periods) has stopped or failed and is removed.
3. Each serviceMgr shares its local cells' statements with the whole serviceMgr tree by broadcast
   (kind ``table``, signed by its own key): at once when they change (a cell started, stopped,
   changed status), and every `REFRESH_MS` otherwise. Every receiver checks each statement's
   signature and keeps the table under the key that signed it. A statement learnt from others
   expires `REMOTE_TTL_MS` (3 refresh periods) after its cell signed it.

Bounds (documented in the README, asserted by the tests): a started cell appears everywhere within
ANNOUNCE_MS + a broadcast (≈ 1.5 s on a LAN); a stopped one disappears within LOCAL_TTL_MS + a
broadcast (≈ 3.5 s), at once on a clean stop; a whole machine's entries within REMOTE_TTL_MS.
The rules for who may write what are in `registry.py`.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

from aiohttp import web

from ... import envelope
from ..kit import ANNOUNCE_MS, Cell, RequestError, on_broadcast, receptor, route
from .registry import STATEMENT, Entry, Limits, Refused, Registry, statement_digest

LOCAL_TTL_MS = 3 * ANNOUNCE_MS
REFRESH_MS = 5000
REMOTE_TTL_MS = 3 * REFRESH_MS
SHARE_CHECK_S = 0.2

_STATUS = {"not_local": 403, "node_mismatch": 403, "not_owner": 403, "registry_full": 503}
# the TCP peer of the receptor request being handled: "local" is decided by it, never by the message
_REQUEST_SOURCE: ContextVar[str | None] = ContextVar("svc_request_source", default=None)


def _request_error(exc: Refused) -> RequestError:
    return RequestError(exc.reason, exc.detail, _STATUS.get(exc.reason, 400))


class ServiceMgrCell(Cell):
    # a registry table is originated by a serviceMgr itself, never relayed for a requester
    MEMBER_KINDS = frozenset({"table"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.registry_table = Registry(
            self.ip,
            self.key.public_key_hex,
            Limits(local_ttl_ms=LOCAL_TTL_MS, remote_ttl_ms=REMOTE_TTL_MS, future_ms=self.verifier.window_ms),
        )
        self._last_share = -REFRESH_MS

    async def on_start(self) -> None:
        self._spawn(self._share_loop())

    # ------------------------------------------------------------ receptor

    @route("recp", "POST", "/recp")
    async def _handle_receptor(self, request: web.Request) -> web.Response:
        """The kit's receptor, with the request's TCP peer kept for the handlers below."""
        token = _REQUEST_SOURCE.set(request.remote)
        try:
            return await super()._handle_receptor(request)
        finally:
            _REQUEST_SOURCE.reset(token)

    @receptor("svc.announce")
    async def _r_announce(self, env: envelope.Envelope) -> Any:
        table = self.registry_table
        try:
            table.require_local(_REQUEST_SOURCE.get())  # before any work on a stranger's message
            raw = env.payload.get("entry") if isinstance(env.payload, dict) else None
            if not isinstance(raw, dict):
                raise table.refuse("malformed", "an announcement carries the cell's signed statement")
            entry = self._verified_statement(raw, known=False)
            table.announce(self.clock.now_ms(), _REQUEST_SOURCE.get(), env.signer, entry, raw)
        except Refused as exc:
            raise _request_error(exc) from None
        return {"ok": True, "ttl_ms": LOCAL_TTL_MS}

    @receptor("svc.withdraw")
    async def _r_withdraw(self, env: envelope.Envelope) -> Any:
        payload = env.payload if isinstance(env.payload, dict) else {}
        try:
            self.registry_table.withdraw(_REQUEST_SOURCE.get(), env.signer, payload.get("cell"), payload.get("ip"))
        except Refused as exc:
            raise _request_error(exc) from None
        return {"ok": True}

    @receptor("svc.list")
    async def _r_list(self, env: envelope.Envelope) -> Any:
        wanted = env.payload.get("cell") if isinstance(env.payload, dict) else None
        return {"services": self.services(wanted if isinstance(wanted, str) else None)}

    # ------------------------------------------------------------ statements and tables

    def _verified_statement(self, raw: Any, *, known: bool = True) -> Entry:
        """The entry of a cell's signed statement, through the one Verifier; Refused (counted) otherwise.

        A statement already verified (the same bytes, e.g. in two tables of one origin within an
        announce period) is taken from memory when ``known``: its nonce is spent, so the Verifier
        would call it a replay."""
        table = self.registry_table
        if not isinstance(raw, dict):
            raise table.refuse("malformed", "an entry is a cell's signed statement")
        try:
            digest = statement_digest(raw) if known else b""
        except Refused as exc:
            raise table.refuse(exc.reason, exc.detail) from None
        entry = table.known(digest) if known else None
        if entry is not None:
            return entry
        try:
            env = self.verifier.verify(raw, expected_type=STATEMENT, broadcast_types=(STATEMENT,))
        except envelope.EnvelopeError as exc:
            raise table.refuse(exc.reason, f"statement refused: {exc}") from None
        try:
            entry = Entry.from_statement(env.signer, env.ts, env.payload)
        except Refused as exc:
            raise table.refuse(exc.reason, exc.detail) from None
        if known:
            table.remember(digest, entry)
        return entry

    @on_broadcast("table")
    def _b_table(self, origin: str, data: dict[str, Any]) -> None:
        """Another serviceMgr's table: kept under the key that signed it, each statement checked."""
        table = self.registry_table
        try:
            found = table.table_statements(origin, data)
            if found is None:
                return  # our own table, back through the tree
            via, raws = found
            entries = []
            for raw in raws:
                try:
                    entries.append(self._verified_statement(raw))
                except Refused:
                    pass  # counted; the table's other entries stand on their own signatures
            table.accept_table(self.clock.now_ms(), origin, via, entries)
        except Refused:
            pass  # counted by the registry

    async def _share_loop(self) -> None:
        while True:
            await asyncio.sleep(SHARE_CHECK_S)
            now = self.clock.now_ms()
            self.registry_table.expire(now)
            if self.registry_table.changed or now - self._last_share >= REFRESH_MS:
                self._last_share = now
                statements = self.registry_table.share(now)
                self.broadcast("table", {"origin": self.me.node_id, "ip": self.me.ip, "entries": statements})

    # ------------------------------------------------------------ views

    def services(self, cell: str | None = None) -> list[dict[str, Any]]:
        """Every live service this registry knows (of one cell type when named)."""
        return self.registry_table.services(self.clock.now_ms(), cell)

    def status(self) -> dict[str, Any]:
        doc = super().status()
        figures = self.registry_table.figures(self.clock.now_ms())
        doc["registry_table"] = {**figures, "services": len(self.services())}
        return doc
