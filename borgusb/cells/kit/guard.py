"""The doors' guard: rate limits per address and per key, and request bodies read under a budget.

Anyone can open a connection, so what a cell spends before a signature has
been checked is bounded by where the request comes from:

* **per address** (before anything is read): a token bucket of requests, and
  a budget of body bytes in flight (plus one for all addresses together); a
  request without a length, or one the budget cannot hold, is refused at once
  and its body never read;
* **a deadline** on reading the body: a client that holds back its last byte
  is cut off, and its bytes are released;
* **per key** (once the signature is checked): a token bucket of requests.

Every refusal is a typed `RequestError` (``rate_limited``, ``busy``,
``length_required``, ``body_timeout``) counted under ``refused:<reason>``
(``rate_limited:address`` and ``rate_limited:key`` tell the two buckets apart).
After a burst of large bodies, once nothing is in flight, the freed heap is
handed back to the system (glibc keeps it otherwise: the issue measured
memory that stayed after the clients left).

`TokenBuckets` and `BodyBudget` are pure (time is passed in) and bounded:
at most `max_keys` buckets, the least recently used dropped first (a dropped
bucket comes back full, which only ever errs toward letting a request in).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from .errors import RequestError

_REMOTE: ContextVar[str] = ContextVar("borgusb_remote_address", default="?")


def remote_address() -> str:
    """The address the request being handled came from, as the socket saw it (not as any payload
    says): for a handler that limits what one address may do (the guard set it for this request)."""
    return _REMOTE.get()


TRIM_AFTER_BYTES = 4 << 20  # body bytes read since the last trim before the heap is handed back
TRIM_DELAY_S = 1.0


@dataclass(frozen=True)
class Limits:
    """The guard's bounds; the defaults leave honest traffic (a DStream pull, a tree) far below them."""

    address_rate: float = 500.0  # requests per second per remote address
    address_burst: int = 1000
    key_rate: float = 250.0  # requests per second per signing key
    key_burst: int = 500
    address_bytes: int = 12 << 20  # body bytes in flight per address (two frames and change)
    total_bytes: int = 48 << 20  # body bytes in flight for all addresses together
    body_deadline_s: float = 10.0
    max_keys: int = 10_000  # buckets kept per table

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults, with the body deadline from ``BORGUSB_BODY_DEADLINE_S`` (tests shorten it)."""
        deadline = os.environ.get("BORGUSB_BODY_DEADLINE_S")
        return cls(body_deadline_s=float(deadline)) if deadline else cls()


class TokenBuckets:
    """One token bucket per key (an address or a node key), at most `max_keys` of them."""

    def __init__(self, rate: float, burst: int, max_keys: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def would_allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        """Whether `allow` would let `cost` through now; takes nothing and keeps the order."""
        entry = self._buckets.get(key)
        if entry is None:
            return True
        tokens, at = entry
        return min(float(self.burst), tokens + max(0.0, now - at) * self.rate) >= cost

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate)
        allowed = tokens >= cost
        self._buckets[key] = (tokens - cost if allowed else tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed


class BodyBudget:
    """Body bytes in flight, per address and in all; a reservation is all or nothing."""

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address = per_address
        self.total = total
        self.in_flight = 0
        self._by_address: Counter[str] = Counter()

    def addresses(self) -> int:
        return len(self._by_address)

    def reserve(self, address: str, n: int) -> bool:
        if self._by_address[address] + n > self.per_address or self.in_flight + n > self.total:
            if not self._by_address[address]:
                del self._by_address[address]
            return False
        self._by_address[address] += n
        self.in_flight += n
        return True

    def release(self, address: str, n: int) -> None:
        self.in_flight -= n
        self._by_address[address] -= n
        if self._by_address[address] <= 0:
            del self._by_address[address]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Guard:
    """A cell's guard over all its doors (one per cell: the budgets are shared by its ports)."""

    def __init__(self, counters: Counter[str], limits: Limits | None = None) -> None:
        self.limits = limits or Limits.from_env()
        self.counters = counters
        self.addresses = TokenBuckets(self.limits.address_rate, self.limits.address_burst, self.limits.max_keys)
        self.keys = TokenBuckets(self.limits.key_rate, self.limits.key_burst, self.limits.max_keys)
        self.budget = BodyBudget(self.limits.address_bytes, self.limits.total_bytes)
        self._read_since_trim = 0
        self._trim_pending = False

    def _trim(self) -> None:
        self._trim_pending = False
        if not self.budget.in_flight:
            self._read_since_trim = 0
            # the young generations only: a refused body's garbage is young, and a full collection
            # stalls the event loop 10-15 ms (the flood scenario's honest p99 doubled, a trim a second)
            gc.collect(1)
            _trim_heap()

    def refuse(self, exc: RequestError, *, close: bool = False) -> web.Response:
        """A counted refusal; ``close`` drops the connection (its body was not read: never read it)."""
        self.counters[f"refused:{exc.reason}"] += 1
        response = web.json_response(exc.to_json(), status=exc.status)
        if close:
            response.force_close()
        return response

    def admit_key(self, signer: str, cost: int = 1) -> None:
        """After a signature check: raise `RequestError` ("rate_limited") past the key's rate
        (``cost``: the requests one envelope stands for, a batch of tree messages)."""
        if not self.keys.allow(signer, time.monotonic(), cost):
            self.counters["refused:rate_limited"] += 1
            self.counters["rate_limited:key"] += 1  # which bucket: the key's
            raise RequestError("rate_limited", "too many requests from this key; slow down", 429)

    def middleware(self, max_body: int, larger: dict[str, int] | None = None) -> Middleware:
        """The middleware of one door: per-address rate, then (for a body of at most `max_body`
        bytes, or ``larger[path]`` on such a path) a reserved budget and a deadline on reading
        it, before the handler sees it."""
        larger = dict(larger or {})

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._guard(request, handler, larger.get(request.path, max_body))

        return guard

    async def _guard(self, request: web.Request, handler: Handler, max_body: int) -> web.StreamResponse:
        address = request.remote or "?"
        _REMOTE.set(address)  # this request's task only: each request is handled in its own
        if not self.addresses.allow(address, time.monotonic()):
            self.counters["rate_limited:address"] += 1  # which bucket: the address's
            return self.refuse(
                RequestError("rate_limited", "too many requests from this address; slow down", 429), close=True
            )
        if request.method not in ("POST", "PUT"):
            return await handler(request)
        length = request.content_length
        if length is None:
            return self.refuse(
                RequestError("length_required", "a request body needs a Content-Length", 411), close=True
            )
        if length > max_body:
            return self.refuse(
                RequestError("too_large", f"a request body is at most {max_body} bytes", 413), close=True
            )
        if not self.budget.reserve(address, length):
            return self.refuse(
                RequestError("busy", "too many request bytes in flight from here; retry", 503), close=True
            )
        try:
            try:
                await asyncio.wait_for(request.read(), self.limits.body_deadline_s)
            except TimeoutError:
                return self.refuse(
                    RequestError("body_timeout", "the request body did not arrive in time", 408), close=True
                )
            return await handler(request)
        finally:
            self.budget.release(address, length)
            self._read_since_trim += length
            if not self.budget.in_flight and self._read_since_trim >= TRIM_AFTER_BYTES and not self._trim_pending:
                # a moment later, once the refused connections are closed and their buffers freed
                self._trim_pending = True
                asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._trim)


def _trim_heap() -> None:
    """Hand freed heap back to the system (glibc's malloc_trim; elsewhere nothing)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass
