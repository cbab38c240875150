"""`borgusb cell ...`: run one cell as a process, list the cell DNA table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import json
import logging
import os
import shlex
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import dna

# at import, not in run_cell: a cell forked from the cell host runs as another user, who may not read the
# code's directory, so everything it runs is loaded before the fork (standard library only, small)
from .aisite import use_ai_site
from .net.activation import notify

if TYPE_CHECKING:
    from .cells.kit import Cell
    from .cells.spec import CellSpec
    from .keys import SigningKey


def default_ip() -> str:
    """The address of the interface that holds the default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed, only used to pick a source
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


CREDENTIAL = "node-key"  # systemd LoadCredential= name of the machine's node key


def node_key(path: str | None) -> SigningKey | None:
    """The machine's node key, if one is given: --key-file, or the systemd credential.

    The file holds the 32-byte secret in hex and lives in RAM (/run, or the
    credentials directory systemd mounts for the unit); without one, the cell
    makes a fresh key for this process.
    """
    from .keys import SigningKey

    if path is None:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        candidate = Path(creds) / CREDENTIAL if creds else None
        if candidate is None or not candidate.exists():
            return None
        path = str(candidate)
    try:
        text = Path(path).read_text().strip()
        secret = bytearray(bytes.fromhex(text))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the node key from {path}: {exc}") from None
    try:
        return SigningKey(secret)
    finally:
        for i in range(len(secret)):
            secret[i] = 0


def load_cell_code(name: str) -> None:
    """Import everything running the cell will need, now: what the node injects and the cell's own code.

    Imports are the slow part of starting a cell; a booted stick does them while the stick is read
    (``--args-file``), and the cell host does them once for every cell it forks."""
    import encodings.idna  # noqa: F401  (otherwise loaded at the first connection: aiohttp's host names)

    import cryptography.hazmat.backends.openssl  # noqa: F401  (otherwise at the first TLS certificate)

    from .cells import spec
    from .cells.crono import client  # noqa: F401
    from .cells.servicemgr import client as _  # noqa: F401

    found = spec(name)
    found.runtime_class()
    found.settings_class()


async def start_cell(spec: CellSpec, args: argparse.Namespace) -> Cell:
    """Build a cell from its SPEC and inject what the node provides: settings, clock, registry.

    The node is where cell types meet: every cell but the clock itself takes network time
    from the crono cell on its IP, and announces itself to the serviceMgr there.
    """
    from .cells.crono.client import CronoClient
    from .cells.servicemgr.client import ServiceMgrClient

    settings = spec.settings_class().from_sources(args)
    machine_key = node_key(args.key_file)
    cell = spec.runtime_class()(
        spec.dna_row(),
        args.ip or default_ip(),
        key=machine_key,
        contacts=args.join,
        settings=settings,
        heartbeat_ms=args.heartbeat_ms,
        confirm_misses=args.confirm_misses,
        data_dir=Path(args.data) if args.data else None,
    )
    cell.registry = ServiceMgrClient(cell.peers, cell.ip)  # the serviceMgr on the cell's own IP
    if spec.network_clock:
        # with the machine's node key, only our own crono cell may set our clock; a process that
        # made up its own key (a test cluster on loopback) takes whoever answers on its IP
        clock = CronoClient(cell.ip, cell.peers, node_key=machine_key.public_key_hex if machine_key else None)
        await clock.first_sync()
        cell.use_clock(clock, clock.run())
    return cell


async def run_cell(args: argparse.Namespace) -> int:
    from .cells import spec as cell_spec

    started = time.monotonic()
    use_ai_site()  # the image's AI stack, for the cells whose unit names it (brain, memory)
    spec = cell_spec(args.name)
    cell = await start_cell(spec, args)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, cell.request_stop)
    try:
        await cell.start()
    except RuntimeError as exc:
        print(f"borgusb: {exc}", file=sys.stderr)
        await cell.stop()
        return 1
    # one write for the whole line: cells forked by one cell host share its stdout
    sys.stdout.write(
        f"BORGUSB-READY cell={args.name} ip={cell.ip} node={cell.key.public_key_hex} "
        f"mon=http://{cell.ip}:{cell.dna.mon_port}/ t={time.monotonic() - started:.2f}s\n"
    )
    sys.stdout.flush()
    notify("READY=1")  # a systemd unit of Type=notify is active once its cell listens
    try:
        await cell.wait_stopped()
    finally:
        await cell.stop()
        cell.key.close()
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([d.to_dict() for d in dna.CELLS.values()], indent=2))
        return 0
    print(f"{'cell':<18} {'netPort':>7} {'recpPort':>8} {'monPort':>7} {'maxChildren':>11}  summary")
    from .cells import specs

    running = specs()
    for d in dna.CELLS.values():
        mark = "" if d.name in running else "  (not in this version yet)"
        print(f"{d.name:<18} {d.net_port:>7} {d.recp_port:>8} {d.mon_port:>7} {d.max_children:>11}  {d.summary}{mark}")
    return 0


@functools.cache
def build_parser(cell: str | None = None) -> argparse.ArgumentParser:
    """The `borgusb cell` parser; with a cell type named, ``run`` also takes that cell's settings.

    Built once per cell type (parsing does not change a parser): the cell host builds them before
    it forks, so a forked cell does not pay for building its own (1.1 MiB private each)."""
    parser = argparse.ArgumentParser(prog="borgusb cell", description="Run and inspect BorgUSB cells.")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    run = sub.add_parser(
        "run",
        help="run one cell as a process (joins its tree or becomes root)",
        description="Run one cell as a process. 'borgusb cell run NAME --help' lists that cell's own settings.",
    )
    run.add_argument("name", help="cell type, e.g. peerTreeNet (see 'borgusb cell list')")
    run.add_argument("--ip", help="address to bind and advertise (default: the default-route interface)")
    run.add_argument(
        "--join",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="a contact to join through (repeatable); none: become root and keep looking",
    )
    run.add_argument("--heartbeat-ms", type=int, default=1000, help="heartbeat period (default 1000)")
    run.add_argument(
        "--confirm-misses", type=int, default=3, help="missed heartbeats before a peer is declared failed (default 3)"
    )
    run.add_argument("--data", metavar="DIR", help="directory for the cell's data (RAM on the stick)")
    run.add_argument(
        "--key-file",
        metavar="FILE",
        help="the machine's node key (hex secret in a RAM file; default: the systemd credential "
        f"'{CREDENTIAL}' if present, else a fresh key for this process)",
    )
    run.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default)")
    run.add_argument(
        "--args-file",
        metavar="FILE",
        help="more arguments (shell words) from FILE: the cell loads its code at once, waits "
        f"up to {ARGS_WAIT_S:.0f}s for FILE, then up to {IP_WAIT_S:.0f}s for its address "
        "(how a booted stick starts its cells while the stick is still being read)",
    )
    if cell is not None:
        from .cells import spec

        try:
            spec(cell).settings_class().add_arguments(run)
        except ValueError:
            pass  # the unknown name is reported when the cell is looked up, with the list of known ones
    run.set_defaults(func=lambda a: asyncio.run(run_cell(a)))
    lst = sub.add_parser("list", help="the cell DNA table: ports and fan-out of every cell type")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_list)
    return parser


def _cell_named(argv: list[str]) -> str | None:
    """The cell type in ``run NAME ...`` (before the full parse, to add that cell's settings)."""
    quiet = [a for a in argv if a not in ("-h", "--help")]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            known, _ = build_parser().parse_known_args(quiet)
    except SystemExit:  # the real parse reports the error
        return None
    return getattr(known, "name", None)


ARGS_WAIT_S = 120.0  # how long a cell waits for its --args-file before it starts with what it has
IP_WAIT_S = 30.0  # how long it then waits for its address to be configured (or, without --ip, for a route)


def _read_args_file(path: Path) -> list[str]:
    """Shell words from FILE (one or more lines), e.g. ``--ip 10.0.0.5 --join 10.0.0.1``."""
    return shlex.split(path.read_text(), comments=True)


def _address_ready(ip: str) -> bool:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 0))
            return True
        except OSError:
            return False


def complete_from_args_file(argv: list[str], args: argparse.Namespace) -> argparse.Namespace:
    """``cell run --args-file FILE``: start now, take the rest of the arguments when FILE exists.

    On a booted stick the cells' arguments (the node's address, its contacts) come from the
    stick's marker, which borgusb-stick.service reads once the USB device has shown up, several
    seconds into the boot. Python's imports are the slow part of starting a cell, so systemd
    starts the cells at once: each imports everything it will need, then waits here for the file,
    then for its address to be configured, and only then binds."""
    load_cell_code(args.name)  # the imports, while the stick is still being read
    path = Path(args.args_file)
    deadline = time.monotonic() + ARGS_WAIT_S
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if path.exists():
        try:
            extra = _read_args_file(path)
        except (OSError, ValueError) as exc:
            print(f"borgusb: ignoring {path}: {exc}", file=sys.stderr)
            extra = []
        args = build_parser(args.name).parse_args([*argv, *extra])
    else:
        print(f"borgusb: {path} did not appear within {ARGS_WAIT_S:.0f}s; starting without it", file=sys.stderr)
    deadline = time.monotonic() + IP_WAIT_S
    while time.monotonic() < deadline:
        if _address_ready(args.ip) if args.ip else default_ip() != "127.0.0.1":
            break
        time.sleep(0.05)
    return args


def main(argv: list[str]) -> int:
    args = build_parser(_cell_named(argv)).parse_args(argv)
    if getattr(args, "args_file", None):
        args = complete_from_args_file(argv, args)
    logging.basicConfig(
        level=getattr(logging, str(getattr(args, "log_level", "WARNING")).upper(), logging.WARNING),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"borgusb: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
