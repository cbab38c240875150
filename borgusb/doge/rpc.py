"""An asyncio JSON-RPC 1.0 client for dogecoind (the same for a real node and the tests' stand-in).

URL, user and password come from the cell's settings (never from the
repository). Every call has a timeout and a bounded reply; a node's error
object becomes `RpcError` with dogecoind's code and message; a node that
cannot be reached, times out or answers something that is not JSON-RPC is
`RpcUnavailable` (transient: worth another try later).
"""

from __future__ import annotations

import asyncio
import base64
import decimal
import itertools
import json
from typing import Any

import aiohttp

MAX_REPLY = 8 << 20  # a verbose block of a full 1 MB block fits
DEFAULT_TIMEOUT_S = 10.0


class RpcUnavailable(Exception):
    """The node did not answer usefully (connection, timeout, HTTP or framing): transient."""


class RpcAuthError(RpcUnavailable):
    """The node refused our user and password (HTTP 401/403)."""


class RpcError(Exception):
    """The node answered with an error object: its code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class DogeRpc:
    """One node's JSON-RPC endpoint; one pooled HTTP session."""

    def __init__(
        self,
        url: str,
        user: str,
        password: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_reply: int = MAX_REPLY,
        concurrency: int = 4,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the RPC URL is http://HOST:PORT/ or https://...")
        self.url = url
        # HTTP basic auth, as dogecoind's rpcuser/rpcpassword expect it
        self._headers = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_reply = max_reply
        self._ids = itertools.count(1)
        self._gate = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, *params: Any) -> Any:
        """The result of one call, or `RpcError` / `RpcUnavailable`."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        ident = next(self._ids)
        body = {"jsonrpc": "1.0", "id": ident, "method": method, "params": list(params)}
        async with self._gate:
            try:
                async with self._session.post(self.url, json=body) as resp:
                    if resp.status in (401, 403):
                        raise RpcAuthError(f"the node refused the RPC user and password (HTTP {resp.status})")
                    raw = await resp.content.read(self._max_reply + 1)
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise RpcUnavailable(f"{method}: {exc.__class__.__name__}: {exc}") from None
        if len(raw) > self._max_reply:
            raise RpcUnavailable(f"{method}: the reply is over {self._max_reply} bytes")
        try:
            # amounts in verbose replies are decimals; no float is ever made
            reply = json.loads(raw, parse_float=decimal.Decimal)
        except ValueError:
            raise RpcUnavailable(f"{method}: HTTP {status} without a JSON-RPC reply") from None
        if not isinstance(reply, dict) or reply.get("id") != ident:
            raise RpcUnavailable(f"{method}: a reply to another request")
        error = reply.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            raise RpcError(code if isinstance(code, int) else 0, str(message or error)[:300])
        if "result" not in reply:
            raise RpcUnavailable(f"{method}: a reply without a result")
        return reply["result"]
