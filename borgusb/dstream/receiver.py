"""Receiving (`Receiver`): an object's shards pulled from every holder at once.

The manifest arrives in a normal signed envelope (``shard.locate``, `parse_locate`), which
checks it against the object id (the id is the SHA-256 of the manifest's shard list,
`shard.model.object_id`); the receiver refuses at once an object that does not fit
(`check_free_space`), pre-allocates ``FILE.part``, keeps each holder's pipe full with
different shards (`shard.window.Window`: a bounded window per holder, a slow holder's
shards asked again of the others, a holder that serves bad bytes avoided), and checks each
shard's SHA-256 against the manifest before writing it at its offset (hashing and
``pwrite`` in worker threads as soon as the shard's bytes are in, while the rest of its
reply still arrives, so two cores work). Every byte is hashed exactly once: once
every shard is checked the file is the object, and it is renamed into place.

Each refusal is counted by reason in ``stats["refused"]``: ``bad_bytes`` (not the shard's
bytes: the holder is avoided), ``bad_reply`` (a reply that does not verify: avoided),
``not_held``, ``corrupt_dropped`` (the holder found its copy corrupt), ``refused`` (any
other refusal), ``unreachable`` (the holder is dropped).

**Receipts**: when the object is whole, the receiver signs a receipt for each holder listing the
shards that holder gave (`shard.receipt`; at most `MAX_RECEIPTS_PER_HOLDER` of them, the biggest
shards first) and hands it in (``shard.receipt``) in the background, for at most
`RECEIPT_WAIT_S` in all: the holder's evidence for the ``serve`` reward (docs/ledger.md). The
read does not wait for them (a holder that stopped answering would hold it up); a process that
ends right after a read awaits `Receiver.receipts_handed`. A fetch that fails or is cancelled
signs nothing.

**Resuming**: a ``FILE.part`` of the right size is re-read shard by shard at the start;
every shard whose bytes already match its hash is done. So a receiver killed at any moment
resumes from what is on disk, with no journal to get out of step with the data.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import dna
from ..net.peer import PeerClient, PeerRejected, PeerUnreachable
from ..shard import model
from ..shard.receipt import MAX_RECEIPT_SHARDS, sign_receipt
from ..shard.window import MAX_WINDOW, Window
from .buffers import BUFFERS
from .channel import MAX_BATCH, DataChannel
from .frames import Holder, StreamError, post_frame

SHARD_DATA_PORT = dna.get("shardTreeCell").mon_port  # where holders serve shard bytes (their shard cell's monPort)
WINDOW_BYTES = 32 << 20  # shard buffers in flight at most (the window shrinks for larger shards)
AVOID = frozenset(("bad_bytes", "bad_reply"))  # outcomes after which a holder is asked for nothing more
REFUSAL = {404: "not_held", 410: "corrupt_dropped"}
MAX_RECEIPTS_PER_HOLDER = 4  # receipts one fetch hands one holder (64 shards; a serve record pays 1 GiB an hour)
RECEIPT_WAIT_S = 3.0
_HANDING_IN: set[asyncio.Future[int]] = set()  # receipts on their way, at most RECEIPT_WAIT_S each


def parse_locate(reply: dict[str, Any], object_id: str) -> tuple[dict[str, Any], list[list[Holder]]]:
    """The manifest (checked: owner-signed, right id) and each shard's holders from a locate reply."""
    m = reply.get("manifest")
    if not reply.get("found") or m is None:
        raise StreamError(f"object {object_id} not found (no holder answered)")
    model.check_manifest(m)
    if m["id"] != object_id:
        raise StreamError("the manifest is for another object")
    try:
        holders = [Holder.from_json(h) for h in reply["holders"]]
        per_shard = [[holders[j] for j in idx] for idx in reply["shards"]]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise StreamError(f"a malformed locate reply ({exc.__class__.__name__})") from None
    if len(per_shard) != len(m["shards"]):
        raise StreamError("the locate reply does not match the manifest")
    return m, per_shard


def check_free_space(directory: Path, size: int) -> None:
    """Refuse, before a byte is fetched, an object that cannot fit: a full disk is said, not
    found out halfway through."""
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    if free < size:
        raise StreamError(f"{directory}: not enough free space for {size} bytes ({free} bytes free)")


class Receiver:
    """Fetch one located object into `path` (see the module's docstring); `run` returns stats.

    ``tls``: pinned TLS frames (`post_frame`) instead of the plain data channel on
    ``data_port`` (the holders' shard cell's monPort). ``per_holder``: requests in flight on
    one holder; ``window``: in all (default: per_holder for each holder, at most
    `shard.window.MAX_WINDOW`); ``late_ms``: the least time before a shard in flight is
    asked of another holder too. ``on_shard(i)``: shard i is checked and in ``FILE.part`` (fStream
    serves it from there at once); `prefer` moves the fetch to a later shard first."""

    def __init__(
        self,
        peers: PeerClient,
        manifest: dict[str, Any],
        holders: list[list[Holder]],
        path: Path,
        *,
        window: int | None = None,
        per_holder: int = 16,
        late_ms: int = 250,
        progress: Callable[[int, int], None] | None = None,
        on_shard: Callable[[int], None] | None = None,
        stop_after: int | None = None,
        throttle_ms: int = 0,
        tls: bool = False,
        batch: int = 8,
        data_port: int = SHARD_DATA_PORT,
    ) -> None:
        self.peers = peers
        self.tls = tls
        self.batch = batch
        self.data_port = data_port
        self._plain: DataChannel | None = None
        self.m = manifest
        self.bounds = model.manifest_bounds(manifest)
        self.holders = holders
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self.window_size = window
        self.per_holder = per_holder
        self.late_ms = late_ms
        self.progress = progress
        self.on_shard = on_shard
        self.win: Window | None = None
        self._first: int | None = None  # a prefer() that came before the window was made
        self.stop_after = stop_after
        self.throttle_ms = throttle_ms
        self.sid = os.urandom(6).hex()
        self.stats: dict[str, Any] = {
            "shards": len(self.bounds),
            "resumed": 0,
            "fetched": 0,
            "bad": 0,
            "unreachable": 0,
            "hedged": 0,
            "avoided": 0,
            "bytes": 0,
        }
        self.refused: Counter[str] = Counter()
        self._prealloc_error: StreamError | None = None
        self._jobs: set[asyncio.Future[Any]] = set()  # worker-thread jobs the file must outlive
        self.served: dict[str, dict[str, int]] = {}  # holder key -> {sha256: size} it gave, checked
        self.receipts_refused: Counter[str] = Counter()
        self._receipts: asyncio.Future[int] | None = None

    def _resume(self) -> set[int] | None:
        """Shards whose bytes are already right in FILE.part; None if it was created (and sized)."""
        size = self.m["size"]
        done: set[int] = set()
        if self.part.exists() and self.part.stat().st_size == size:
            with open(self.part, "rb") as f:
                for i, (off, n) in enumerate(self.bounds):
                    f.seek(off)
                    if hashlib.sha256(f.read(n)).hexdigest() == self.m["shards"][i]:
                        done.add(i)
            return done
        self.part.parent.mkdir(parents=True, exist_ok=True)
        check_free_space(self.part.parent, size)
        fd = os.open(self.part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        return None

    def _preallocate(self, fd: int, size: int) -> None:
        """Reserve the file's blocks, while the first shards are already on their way (on tmpfs
        this zeroes every page: ~7 ms for 30 MB, no longer a pause before the first request),
        so the disk cannot fill up under the transfer."""
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._prealloc_error = StreamError(
                    f"{self.part.parent}: no room for {size} bytes (the disk filled up as the transfer began)"
                )
            # other errors: the file system cannot reserve; the sized file is enough

    def _check_and_write(self, fd: int, i: int, data: memoryview, buf: bytearray | None = None) -> bool:
        """In a worker thread: the shard's SHA-256 (the only pass over its bytes) before it is
        written at its offset. Gives buf back."""
        off, n = self.bounds[i]
        try:
            if len(data) != n or hashlib.sha256(data).hexdigest() != self.m["shards"][i]:
                return False
            os.pwrite(fd, data, off)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StreamError(f"{self.part.parent}: the disk is full ({exc.strerror})") from None
            raise
        finally:
            if buf is not None:
                BUFFERS.give(buf)
        return True

    def _check_and_write_all(self, fd: int, got: list[tuple[int, memoryview, bytearray | None]]) -> list[bool]:
        return [self._check_and_write(fd, i, data, buf) for i, data, buf in got]

    async def _checked_write(self, fd: int, got: list[tuple[int, memoryview, bytearray | None]]) -> list[bool]:
        """_check_and_write in a thread; the job is tracked so the file is not closed under it."""
        job = asyncio.get_running_loop().run_in_executor(None, self._check_and_write_all, fd, got)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return await asyncio.shield(job)

    def _submit(self, fd: int, i: int, buf: bytearray) -> asyncio.Future[bool]:
        """Shard i's bytes (in buf) checked and written in a worker thread, tracked so the file
        is not closed under it."""
        view = memoryview(buf)[: self.bounds[i][1]]
        job = asyncio.get_running_loop().run_in_executor(None, self._check_and_write, fd, i, view, buf)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return job

    @staticmethod
    async def _verdict(check: asyncio.Future[bool]) -> str:
        return "ok" if await asyncio.shield(check) else "bad_bytes"

    async def _fetch(self, fd: int, batch: list[int], holder: Holder, win: Window) -> list[tuple[int, Holder, str]]:
        """Fetch shards `batch` (all from `holder`): one request on the data channel, or one
        TLS frame per shard; each shard's outcome is "ok" or the refusal's reason."""
        hs = [self.m["shards"][i] for i in batch]
        base = {"sid": self.sid, "done": len(win.done), "of": win.total}
        results: list[tuple[int, Holder, str]] = []
        got: list[tuple[int, memoryview, bytearray | None]] = []
        if self.tls:
            for i, h in zip(batch, hs):
                try:
                    reply, data = await post_frame(
                        self.peers, holder.ip, holder.port, "shard.get", dict(base, h=h), expect_pubkey=holder.pubkey
                    )
                except PeerUnreachable:
                    results.append((i, holder, "unreachable"))
                    continue
                except PeerRejected as exc:
                    results.append((i, holder, _rejected(exc)))
                    continue
                if not isinstance(reply, dict) or reply.get("h") != h:
                    results.append((i, holder, "bad_reply"))
                else:
                    got.append((i, data, None))
        else:
            assert self._plain is not None
            taken: dict[int, bytearray] = {}
            checks: dict[int, asyncio.Future[bool]] = {}  # shards whose bytes are in, being checked

            def dest(i: int) -> Callable[[int], memoryview]:
                def view(n: int) -> memoryview:
                    if n != self.bounds[i][1]:
                        raise ValueError(f"shard #{i} is {self.bounds[i][1]} bytes, not {n}")
                    buf = taken[i] = BUFFERS.take(self.m["ss"])
                    return memoryview(buf)[:n]

                return view

            def landed(j: int) -> None:  # checked and written while the rest of the reply arrives
                checks[batch[j]] = self._submit(fd, batch[j], taken.pop(batch[j]))

            try:
                out = await self._plain.get(self.peers, holder, dict(base, hs=hs), [dest(i) for i in batch], landed)
            except (PeerUnreachable, PeerRejected) as exc:
                for buf in taken.values():
                    BUFFERS.give(buf)
                outcome = "unreachable" if isinstance(exc, PeerUnreachable) else _rejected(exc)
                for i in batch:  # shards that landed before the failure stand on their own
                    results.append((i, holder, await self._verdict(checks[i]) if i in checks else outcome))
                return results
            for i, o in zip(batch, out):
                if isinstance(o, int):
                    results.append((i, holder, REFUSAL.get(o, "refused")))  # not held there, or its copy was corrupt
                else:
                    check = checks.get(i) or self._submit(fd, i, taken.pop(i))
                    results.append((i, holder, await self._verdict(check)))
        if got:
            for (i, _, _), ok in zip(got, await self._checked_write(fd, got)):
                results.append((i, holder, "ok" if ok else "bad_bytes"))
        if self.throttle_ms:
            await asyncio.sleep(self.throttle_ms / 1000)
        return results

    def _batches(self, issued: list[tuple[int, str]]) -> list[tuple[list[int], str]]:
        """Group the window's new requests by holder into data-channel requests of up to
        `batch` shards (at most half a holder's window, so two or more stay in flight on each)."""
        size = 1 if self.tls else max(1, min(self.batch, MAX_BATCH, self.per_holder // 2))
        by_holder: dict[str, list[int]] = {}
        for i, pk in issued:
            by_holder.setdefault(pk, []).append(i)
        return [(idx[k : k + size], pk) for pk, idx in by_holder.items() for k in range(0, len(idx), size)]

    def prefer(self, first: int) -> None:
        """Fetch shards from `first` on before the others (fStream: the play position moved)."""
        if self.win is not None:
            self.win.prefer(first)
        else:
            self._first = first

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        resumed = await asyncio.to_thread(self._resume)
        done = resumed or set()
        self.stats["resumed"] = len(done)
        by_id = {h.pubkey: h for hs in self.holders for h in hs}
        win = Window(
            [[h.pubkey for h in hs] for hs in self.holders],
            done=done,
            window=min(
                self.window_size or MAX_WINDOW,
                max(1, WINDOW_BYTES // self.m["ss"]),
                self.stop_after or MAX_WINDOW,
            ),
            per_holder=self.per_holder,
            late_ms=self.late_ms,
        )
        self.win = win
        if self._first is not None:
            win.prefer(self._first)
        if self.on_shard:
            for i in sorted(done):
                self.on_shard(i)
        total_bytes = self.m["size"]
        got = sum(self.bounds[i][1] for i in done)
        if self.progress:
            self.progress(got, total_bytes)
        fd = os.open(self.part, os.O_RDWR)
        if resumed is None and total_bytes:
            job = asyncio.get_running_loop().run_in_executor(None, self._preallocate, fd, total_bytes)
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)
        tasks: set[asyncio.Task[list[tuple[int, Holder, str]]]] = set()
        if not self.tls:
            self._plain = DataChannel(self.data_port)
        tick = max(0.02, self.late_ms / 4000)  # wake up to notice late shards even when nothing lands
        try:
            while not win.finished:
                if self._prealloc_error is not None:
                    raise self._prealloc_error
                if self.stop_after is not None and self.stats["fetched"] >= self.stop_after:
                    raise StreamError(f"stopped after {self.stats['fetched']} shards (--stop-after)")
                if self.stop_after is None or self.stats["fetched"] + win.requests < self.stop_after:
                    for batch, pk in self._batches(win.next(_now_ms())):
                        tasks.add(asyncio.ensure_future(self._fetch(fd, batch, by_id[pk], win)))
                if not tasks:
                    stuck = win.stuck()
                    raise StreamError(
                        f"{len(stuck)} shards could not be fetched from any holder "
                        f"(first: #{stuck[0] if stuck else '?'}; refused: {dict(self.refused)})"
                    )
                finished, tasks = await asyncio.wait(tasks, timeout=tick, return_when=asyncio.FIRST_COMPLETED)
                now = _now_ms()
                for i, holder, outcome in (r for task in finished for r in task.result()):
                    if outcome == "ok":
                        self.served.setdefault(holder.pubkey, {})[self.m["shards"][i]] = self.bounds[i][1]
                        if i not in win.done:
                            self.stats["fetched"] += 1
                            got += self.bounds[i][1]
                            self.stats["bytes"] += self.bounds[i][1]
                            if self.progress:
                                self.progress(got, total_bytes)
                            if self.on_shard:
                                self.on_shard(i)
                        win.ok(i, holder.pubkey, now)
                        continue
                    self.refused[outcome] += 1
                    if outcome == "unreachable":
                        self.stats["unreachable"] += 1
                        win.unreachable(i, holder.pubkey)
                    else:
                        self.stats["bad"] += 1
                        win.bad(i, holder.pubkey, avoid=outcome in AVOID)
        finally:
            for task in tasks:  # a slow holder's copies of shards that others already gave
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._jobs:  # threads still writing into the file: let them end before it is closed
                await asyncio.wait(set(self._jobs))
            os.close(fd)
            if self._plain is not None:
                self._plain.close()
                self._plain = None
        os.replace(self.part, self.path)
        self._receipts = asyncio.ensure_future(self._hand_in_receipts(by_id))
        _HANDING_IN.add(self._receipts)  # the loop keeps tasks weakly: a dropped Receiver's would vanish
        self._receipts.add_done_callback(_HANDING_IN.discard)
        self.stats["retries"] = win.retries
        self.stats["hedged"] = win.hedged
        self.stats["avoided"] = len(win.avoided)
        self.stats["refused"] = dict(self.refused)
        self.stats["seconds"] = round(time.monotonic() - started, 4)
        return self.stats

    async def receipts_handed(self) -> int:
        """How many receipts the holders kept (0 before `run` completed): a process that ends right
        after a read waits for this, at most `RECEIPT_WAIT_S`, or its receipts go with it."""
        return await self._receipts if self._receipts is not None else 0

    async def _hand_in_receipts(self, by_id: dict[str, Holder]) -> int:
        """Sign and hand each holder its receipts (see the module's docstring); how many it took."""
        key, now = self.peers.key, self.peers.clock.now_ms()
        most = MAX_RECEIPTS_PER_HOLDER * MAX_RECEIPT_SHARDS
        posts = []
        for pk, shards in self.served.items():
            if pk == key.public_key_hex:
                continue  # a node's own reads earn nothing
            biggest = sorted(shards.items(), key=lambda s: (-s[1], s[0]))[:most]
            for k in range(0, len(biggest), MAX_RECEIPT_SHARDS):
                receipt = sign_receipt(key, pk, dict(biggest[k : k + MAX_RECEIPT_SHARDS]), now)
                h = by_id[pk]
                doc = {"receipt": receipt}
                posts.append(
                    self.peers.post(h.ip, h.port, "/recp", "shard.receipt", doc, expect_pubkey=pk, signed_reply=True)
                )
        if not posts:
            return 0
        try:
            # asyncio.timeout, not wait_for: a wait_for cancelled from outside (a loop that ends with the
            # hand-in pending) leaves the gather's CancelledError unretrieved, logged when collected (3.11)
            async with asyncio.timeout(RECEIPT_WAIT_S):
                done = await asyncio.gather(*posts, return_exceptions=True)
        except TimeoutError:
            done = [TimeoutError()]
        for d in done:  # what a holder said of a receipt it did not keep: in stats, for whoever asks why
            if not (isinstance(d, dict) and d.get("kept")):
                why = d.reason if isinstance(d, PeerRejected) else "again" if isinstance(d, dict) else type(d).__name__
                self.receipts_refused[why] += 1
        return sum(1 for d in done if isinstance(d, dict) and d.get("kept"))


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def _rejected(exc: PeerRejected) -> str:
    """A whole request refused: a reply that does not verify is the holder's fault, the rest
    (busy, rate-limited) is not."""
    return "bad_reply" if exc.reason == "bad_reply" else "refused"
