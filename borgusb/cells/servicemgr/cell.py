"""serviceMgrCell: the live registry of which nodes run which cells.

How entries flow:

1. Every cell process announces itself once per `ANNOUNCE_MS` to the
   serviceMgr on its own IP (`svc.announce`: cell, ip, ports, status, load),
   and withdraws on a clean stop (`svc.withdraw`).
2. The serviceMgr keeps these *local* entries; one not refreshed for
   `LOCAL_TTL_MS` (3 announce periods) has stopped or failed and is removed.
3. Each serviceMgr shares its local entries with the whole serviceMgr tree
   by broadcast: at once when they change (a cell started, stopped,
   changed status), and every `REFRESH_MS` otherwise. Entries learnt from
   others expire after `REMOTE_TTL_MS` (3 refresh periods) when their
   machine goes silent altogether.

Bounds (documented in the README, asserted by the tests): a started cell
appears everywhere within ANNOUNCE_MS + a broadcast (≈ 1.5 s on a LAN); a
stopped one disappears within LOCAL_TTL_MS + a broadcast (≈ 3.5 s), at once
on a clean stop; a whole machine's entries within REMOTE_TTL_MS.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ... import envelope
from ..kit import ANNOUNCE_MS, Cell, RequestError, on_broadcast, receptor

LOCAL_TTL_MS = 3 * ANNOUNCE_MS
REFRESH_MS = 5000
REMOTE_TTL_MS = 3 * REFRESH_MS
_FIELDS = ("cell", "ip", "ports", "status", "load", "node")


def _entry(payload: Any, signer: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise RequestError("malformed", "an announcement is an object")
    cell, ip, ports = payload.get("cell"), payload.get("ip"), payload.get("ports")
    if not isinstance(cell, str) or not isinstance(ip, str) or not isinstance(ports, list):
        raise RequestError("malformed", "an announcement names cell, ip and ports")
    return {
        "cell": cell[:64],
        "ip": ip[:64],
        "ports": [p for p in ports if isinstance(p, int)][:3],
        "status": str(payload.get("status", ""))[:16],
        "load": payload.get("load") if isinstance(payload.get("load"), dict) else {},
        "node": signer,
    }


class ServiceMgrCell(Cell):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.local: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
        self.remote: dict[str, tuple[list[dict[str, Any]], float]] = {}  # origin ip -> entries, seen
        self._dirty = False
        self._last_share = 0.0

    async def on_start(self) -> None:
        self._spawn(self._share_loop())

    # ------------------------------------------------------------ receptor

    @receptor("svc.announce")
    async def _r_announce(self, env: envelope.Envelope) -> Any:
        entry = _entry(env.payload, env.signer)
        key = (entry["cell"], entry["ip"])
        old = self.local.get(key)
        if old is None or {k: old[0].get(k) for k in ("status", "node", "ports")} != {
            k: entry[k] for k in ("status", "node", "ports")
        }:
            self._dirty = True
        self.local[key] = (entry, time.monotonic())
        return {"ok": True, "ttl_ms": LOCAL_TTL_MS}

    @receptor("svc.withdraw")
    async def _r_withdraw(self, env: envelope.Envelope) -> Any:
        entry = _entry(env.payload, env.signer)
        key = (entry["cell"], entry["ip"])
        current = self.local.get(key)
        if current is not None and current[0]["node"] == env.signer:  # only the cell itself can withdraw
            del self.local[key]
            self._dirty = True
        return {"ok": True}

    @receptor("svc.list")
    async def _r_list(self, env: envelope.Envelope) -> Any:
        wanted = env.payload.get("cell") if isinstance(env.payload, dict) else None
        return {"services": [e for e in self.services() if wanted is None or e["cell"] == wanted]}

    # ------------------------------------------------------------ registry

    def _expire(self) -> None:
        now = time.monotonic()
        for key, (_, seen) in list(self.local.items()):
            if (now - seen) * 1000 > LOCAL_TTL_MS:
                del self.local[key]
                self._dirty = True
        for origin, (_, seen) in list(self.remote.items()):
            if (now - seen) * 1000 > REMOTE_TTL_MS:
                del self.remote[origin]

    def services(self) -> list[dict[str, Any]]:
        self._expire()
        now = time.monotonic()
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for origin, (entries, seen) in self.remote.items():
            for e in entries:
                merged[(e["cell"], e["ip"])] = {**e, "via": origin, "age_ms": int((now - seen) * 1000)}
        for key, (e, seen) in self.local.items():
            merged[key] = {**e, "via": self.ip, "age_ms": int((now - seen) * 1000)}
        return sorted(merged.values(), key=lambda e: (e["cell"], e["ip"]))

    async def _share_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self._expire()
            now = time.monotonic()
            if self._dirty or (now - self._last_share) * 1000 >= REFRESH_MS:
                self._dirty = False
                self._last_share = now
                self.broadcast("table", {"origin": self.ip, "entries": [e for e, _ in self.local.values()]})

    @on_broadcast("table")
    def _b_table(self, signer: str, data: dict[str, Any]) -> None:
        origin, entries = data.get("origin"), data.get("entries")
        if not isinstance(origin, str) or not isinstance(entries, list) or origin == self.ip:
            return
        clean = []
        for e in entries:
            try:
                clean.append(_entry(e, str(e.get("node", ""))[:66]))
            except (RequestError, AttributeError):
                self.counters["svc_bad_entries"] += 1
        self.remote[origin] = (clean, time.monotonic())

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc["registry_table"] = {
            "local": len(self.local),
            "origins": len(self.remote),
            "services": len(self.services()),
        }
        return doc
