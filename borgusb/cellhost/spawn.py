"""The stub a ``borgusb-cell@NAME.service`` runs: ask the cell host for the cell, hand it over to systemd.

It sends the host the cell's arguments, its own environment and its stdin,
stdout and stderr (the unit's journal streams), gets back the pid of the
forked cell, which the host has already placed in this unit's cgroup, mount
namespace and user, and tells systemd that pid is the unit's main process
(``MAINPID``, then a barrier so systemd has taken it before this stub exits).
The cell itself sends ``READY=1`` once it listens. Only the standard library
and the wire format are loaded: the stub lives for milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

from ..net.activation import notify, notify_barrier
from . import wire

CONNECT_WAIT_S = 120.0  # the host may still be loading the cells' code at boot


def connect(path: str, wait_s: float) -> socket.socket:
    deadline = time.monotonic() + wait_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="borgusb cellhost spawn", description="Start a cell by the cell host (what borgusb-cell@.service runs)."
    )
    parser.add_argument("--socket", required=True, help="the cell host's socket")
    parser.add_argument("--wait", type=float, default=CONNECT_WAIT_S, help="seconds to wait for the host")
    parser.add_argument("cell", nargs=argparse.REMAINDER, help="NAME and the `borgusb cell run` arguments")
    args = parser.parse_args(argv)
    if not args.cell:
        parser.error("name the cell to run")
    request = wire.SpawnRequest(("run", *args.cell), tuple(sorted(os.environ.items())))
    try:
        with connect(args.socket, args.wait) as sock:
            sock.settimeout(30.0)
            wire.send_message(sock, request.to_bytes(), [0, 1, 2])
            body, _ = wire.recv_message(sock)
    except (OSError, wire.WireError) as exc:
        print(f"borgusb: the cell host at {args.socket} did not start the cell: {exc}", file=sys.stderr)
        return 1
    answer = json.loads(body)
    pid = answer.get("pid") if isinstance(answer, dict) else None
    if not isinstance(pid, int):
        print(
            f"borgusb: the cell host refused: {answer.get('detail') if isinstance(answer, dict) else answer}",
            file=sys.stderr,
        )
        return 1
    if notify(f"MAINPID={pid}"):
        notify_barrier()
    print(f"borgusb: cell {args.cell[0]} started by the cell host as pid {pid}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
