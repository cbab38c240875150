"""The host process: load every cell's code once, then fork cells on request or under supervision."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import select
import signal
import socket
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..net.activation import notify
from . import wire
from .placement import Caller, Placement, become

ACCEPT_TIMEOUT_S = 1.0  # how long the serve loop blocks before it reaps children again
MAX_BACKOFF_S = 30.0
PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1
PLACE_TIMEOUT_S = 10.0  # how long the host waits for a forked child to be in place


def preload(cells: Sequence[str]) -> None:
    """Import everything the cells will run, warm it up once, then freeze.

    After `gc.freeze()` the collector leaves these objects alone, so the pages that hold them
    stay shared with every forked cell instead of being copied by the first collection.
    """
    from ..node import build_parser, load_cell_code

    for name in cells:
        load_cell_code(name)
        build_parser(name)  # cached: a forked cell parses its arguments with the host's parser
    build_parser()
    asyncio.run(warm_up(cells))
    gc.collect()
    gc.freeze()


async def warm_up(cells: Sequence[str]) -> None:
    """Go once, in the host, through what every cell does at its start: build the cell, make a TLS
    identity, set up its three apps, sign and verify an envelope, open and close a client session.

    The first pass through any code leaves state behind: the interpreter specialises the bytecode it
    runs, types fill their method caches, OpenSSL and aiohttp initialise their tables, shared
    libraries page in. Done here, that state is in pages every forked cell shares instead of in each
    cell's private memory (bench_cellhost prints what a forked cell still costs). Nothing binds a port.
    """
    from aiohttp import web

    from .. import envelope
    from ..cells import spec
    from ..net.tls import make_tls_identity

    for name in cells:
        found = spec(name)
        with tempfile.TemporaryDirectory(prefix="borgusb-warm-up-") as tmp:
            cell = found.runtime_class()(
                found.dna_row(), "127.0.0.1", settings=found.settings_class().from_sources({}, {}), data_dir=Path(tmp)
            )
            try:
                cell.tls = make_tls_identity(f"borgusb-warm-up-{name}")
                for port in ("net", "recp", "mon"):
                    runner = web.AppRunner(cell._app(port, 1024), access_log=None, handle_signals=False)
                    await runner.setup()
                    await runner.cleanup()
                wire = envelope.encode(
                    envelope.sign(
                        cell.key,
                        "warm.up",
                        {"cell": name},
                        cell.clock,
                        ip="127.0.0.1",
                        port=cell.dna.net_port,
                        to=envelope.address(cell.key.public_key_hex, cell.dna.net_port),
                    )
                )
                cell.verifier.verify(wire)
                cell.status()
                _ = cell.peers.session  # a client session made (and closed below)
            finally:
                await cell.peers.close()
                await cell.on_stop()
                cell.key.close()


def run_cell(argv: Sequence[str]) -> int:
    """In a forked child: the same `borgusb cell` entry point a plain process would run."""
    from ..node import main

    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    if len(argv) > 1:  # `ps`, `top` and the memory report name the cell, not the host it was forked from
        ctypes.CDLL(None).prctl(PR_SET_NAME, argv[1].encode()[:15], 0, 0, 0)
    return main(list(argv))


def _child(body: Callable[[], int]) -> None:
    """Run body in this (forked) process and never return into the host's code."""
    code = 1
    try:
        code = body()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def reap() -> list[tuple[int, int]]:
    """Collect every child that has exited: (pid, wait status) pairs."""
    done: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done.append((pid, status))


# ---------------------------------------------------------------- systemd mode


def _peer(conn: socket.socket) -> Caller:
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return Caller(pid, uid, gid)


def _spawn_for(conn: socket.socket) -> int:
    """One request on an accepted connection: fork the cell, put it where the caller lives.

    The answer goes back only once the child is in place (its cgroup, namespace and user): the
    caller then names it systemd's main process, which systemd accepts only inside the unit's cgroup.
    """
    body, fds = wire.recv_message(conn, max_fds=3)
    placement: Placement | None = None
    try:
        if len(fds) != 3:
            raise wire.WireError("send stdin, stdout and stderr with the request")
        request = wire.SpawnRequest.from_bytes(body)
        placement = Placement.of(_peer(conn))
        placed_r, placed_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            conn.close()
            os.close(placed_r)

            def body_() -> int:
                assert placement is not None
                for target, fd in enumerate(fds):  # first, so that even a failure below reaches the unit's log
                    os.dup2(fd, target)
                become(placement)
                os.write(placed_w, b"1")
                os.close(placed_w)
                os.environ.clear()
                os.environ.update(dict(request.env))
                return run_cell(request.argv)

            _child(body_)
        os.close(placed_w)
        try:
            ready = select.select([placed_r], [], [], PLACE_TIMEOUT_S)[0] and os.read(placed_r, 1) == b"1"
        finally:
            os.close(placed_r)
        if not ready:
            raise OSError(f"the cell (pid {pid}) could not be placed in the caller's cgroup, namespace and user")
        return pid
    finally:
        for fd in fds:
            os.close(fd)
        if placement is not None:
            placement.close()


class StopFlag:
    """Raised by SIGTERM or SIGINT: the host's loop ends, then it stops what it started."""

    def __init__(self) -> None:
        self.raised = False
        signal.signal(signal.SIGTERM, self._raise)
        signal.signal(signal.SIGINT, self._raise)

    def _raise(self, *_: object) -> None:
        self.raised = True


def serve(path: str, cells: Sequence[str]) -> int:
    """Answer spawn requests on a Unix socket until SIGTERM (systemd mode; see spawn.py)."""
    preload(cells)
    stop = StopFlag()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o666)  # any unit's user may ask; the child gets only what that caller has
    server.listen(64)
    server.settimeout(ACCEPT_TIMEOUT_S)
    notify("READY=1")
    print(f"BORGUSB-CELLHOST ready socket={path} cells={','.join(cells)}", flush=True)
    while not stop.raised:
        reap()
        try:
            conn, _ = server.accept()
        except (TimeoutError, InterruptedError):
            continue
        with conn:
            conn.settimeout(5.0)
            try:
                pid = _spawn_for(conn)
                wire.reply(conn, {"pid": pid})
            except (wire.WireError, OSError) as exc:
                try:
                    wire.reply(conn, {"error": "refused", "detail": str(exc)[:300]})
                except OSError:
                    pass
    server.close()
    os.unlink(path)
    return 0


# ---------------------------------------------------------------- supervised mode


@dataclass
class Supervised:
    """One cell the host keeps running: its arguments, its process, its restarts."""

    name: str
    argv: list[str]
    pid: int = 0
    restarts: int = 0
    backoff_s: float = 1.0
    due: float = 0.0  # when a failed cell is started again (monotonic)
    started: float = field(default=0.0)


def _fork_cell(cell: Supervised) -> None:
    """Fork one supervised cell: in the host's process group (a signal to the group reaches every
    cell), and killed with the host should the host itself be killed."""
    pid = os.fork()
    if pid == 0:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() == 1:  # the host died before the line above
            os._exit(1)
        _child(lambda: run_cell(cell.argv))
    cell.pid, cell.started = pid, time.monotonic()


def supervise(
    cells: Sequence[str], common: Sequence[str], per_cell: Callable[[str], list[str]], grace_s: float = 5.0
) -> int:
    """Fork every cell, restart any that fails (back-off 1 s doubling to 30 s), stop all on SIGTERM.

    A cell that ran for a minute before failing starts again from the shortest back-off.
    """
    preload(cells)
    stop = StopFlag()
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wake the sleep below
    children = [Supervised(name, ["run", name, *common, *per_cell(name)]) for name in cells]
    for cell in children:
        _fork_cell(cell)
    print(
        f"BORGUSB-CELLHOST supervising cells={','.join(cells)} pids={','.join(str(c.pid) for c in children)}",
        flush=True,
    )
    while not stop.raised:
        for pid, status in reap():
            for cell in children:
                if cell.pid == pid:
                    cell.pid = 0
                    if time.monotonic() - cell.started > 60:
                        cell.backoff_s = 1.0
                    cell.due = time.monotonic() + cell.backoff_s
                    cell.backoff_s = min(MAX_BACKOFF_S, cell.backoff_s * 2)
                    print(
                        f"BORGUSB-CELLHOST cell={cell.name} exited status={os.waitstatus_to_exitcode(status)} "
                        f"restart_in={cell.due - time.monotonic():.1f}s",
                        flush=True,
                    )
        now = time.monotonic()
        for cell in children:
            if cell.pid == 0 and now >= cell.due:
                cell.restarts += 1
                _fork_cell(cell)
        time.sleep(0.2)
    live = [c for c in children if c.pid]
    for cell in live:
        try:
            os.kill(cell.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(c.pid for c in children):
        for pid, _ in reap():
            for cell in children:
                if cell.pid == pid:
                    cell.pid = 0
        time.sleep(0.05)
    for cell in children:
        if cell.pid:
            try:
                os.kill(cell.pid, signal.SIGKILL)
                os.waitpid(cell.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
    return 0
