"""peerPaysCell's directory: the key behind a Doge address, for wallets that pay by address.

The protocol is `borgusb.ledger.directory`; this mixin only carries it:

* **Learned** at the entry: the payer and payee of every transaction sent through this cell and
  every account asked about (``pay.balance``, ``pay.history``), so a wallet that ever looked at
  its balance can be found. A key new here is told (``pay.known``) to its directory holders, the
  lottery's winners for its HASH160 among the member view, in the background (at most
  `TELLS_AT_ONCE` at a time, `MAX_WAITING` waiting, then dropped and counted).
* **Asked**: ``pay.whois {"h160"}`` answers from this cell's own directory, else asks the
  directory holders (``"local": true``: they answer only from theirs) and takes the first key
  that hashes to what was asked; nobody's word counts, only the hash. Unknown: ``unknown_account``
  (404). At most `LOOKUPS_AT_ONCE` lookups ask other nodes at once, since each asks up to R.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ...keys import is_public_key_hex
from ...ledger.certificate import holder_set
from ...ledger.directory import LOTTERY_PREFIX, KeyDirectory, is_key_hash, key_hash, proves
from ..kit import RequestError, receptor
from ..kit.holdercell import HolderCell

TELLS_AT_ONCE = 4
MAX_WAITING = 256  # keys waiting to be told; more are dropped (counted) and told when next seen anew
LOOKUPS_AT_ONCE = 8


class DirectoryReceptors(HolderCell):
    """Keys by address: learned, told to their directory holders, looked up (see the module docstring)."""

    if TYPE_CHECKING:
        r: int
        table: dict[str, str]

        async def _bounded(self, holder: str, type: str, payload: dict[str, Any]) -> dict[str, Any] | str: ...

    def _init_directory(self) -> None:
        self.directory = KeyDirectory()
        self._tell_gate = asyncio.Semaphore(TELLS_AT_ONCE)
        self._lookup_gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)
        self._waiting = 0

    def _directory_holders(self, h160: str) -> list[str]:
        mine = self.key.public_key_hex
        return [h for h in holder_set(LOTTERY_PREFIX + h160, self.members, self.r) if h != mine]

    def know(self, *keys: str) -> None:
        """Keep these keys (a transaction's payer and payee, an account asked about); tell the new ones."""
        for key in keys:
            if not self.directory.learn(key):
                continue
            if self._waiting >= MAX_WAITING:
                self.counters["pay_directory_dropped"] += 1
                continue
            self._waiting += 1
            self._spawn(self._tell(key))

    async def _tell(self, key: str) -> None:
        try:
            async with self._tell_gate:
                for holder in self._directory_holders(key_hash(key)):
                    told = await self._bounded(holder, "pay.known", {"key": key})
                    self.counters["pay_directory_told" if isinstance(told, dict) else "pay_directory_untold"] += 1
        finally:
            self._waiting -= 1

    @receptor("pay.known")
    async def _r_known(self, env: Any) -> Any:
        """A key another member has seen: kept here under its own hash (it proves itself; not told
        further). Only members tell: free keys cannot push the directory's bindings out."""
        if env.signer not in self.table:
            self.counters["pay_refused:not_a_member"] += 1
            raise RequestError("not_a_member", "keys are told by the members of this cell's tree", 403)
        key = env.payload.get("key") if isinstance(env.payload, dict) else None
        if not is_public_key_hex(key):
            raise RequestError("malformed", "key is a compressed public key in lowercase hex")
        self.directory.learn(key)
        return {"h160": key_hash(key)}

    @receptor("pay.whois")
    async def _r_whois(self, env: Any) -> Any:
        """The key behind a HASH160 (a Doge address's), from here or the directory holders."""
        p = env.payload if isinstance(env.payload, dict) else {}
        h160 = p.get("h160")
        if not isinstance(h160, str) or not is_key_hash(h160):
            raise RequestError("malformed", "h160 is the 40 hex digits a Doge address encodes")
        key = self.directory.get(h160)
        if key is None and p.get("local") is not True:
            key = await self._look_up(h160)
        if key is None:
            self.counters["pay_refused:unknown_account"] += 1
            raise RequestError("unknown_account", "no node of this network has seen a key behind that address", 404)
        return {"h160": h160, "key": key}

    async def _look_up(self, h160: str) -> str | None:
        if self._lookup_gate.locked():
            raise RequestError("busy", "too many address lookups at once; retry", 503)
        async with self._lookup_gate:
            holders = self._directory_holders(h160)
            for reply in await asyncio.gather(
                *(self._bounded(h, "pay.whois", {"h160": h160, "local": True}) for h in holders)
            ):
                key = reply.get("key") if isinstance(reply, dict) else None
                if proves(key, h160):
                    assert isinstance(key, str)
                    self.directory.learn(key)
                    return key
                if isinstance(reply, dict):
                    self.counters["pay_directory_wrong"] += 1  # a key that does not hash to the address
        return None
