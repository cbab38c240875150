"""`borgusb conduit`: start the conduit on localhost and print the link to open (it carries the secret)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from ..clitools import START_ONE, find_nodes, machine_ips, port_number
from ..net.activation import listen_sockets

if TYPE_CHECKING:
    from .network import Network

FOLLOW_S = 5.0  # how often a conduit without --node looks again for the nodes running here
DEFAULT_KEYSTORE = Path(os.environ.get("BORGUSB_KEYSTORE", Path.home() / ".local/share/borgusb/keystore.json"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="borgusb conduit",
        description="Start BorgHUIConduit: your browser talks to localhost, the conduit to the network.",
    )
    p.add_argument(
        "--keystore", type=Path, default=DEFAULT_KEYSTORE, help=f"the wallet keystore (default {DEFAULT_KEYSTORE})"
    )
    p.add_argument("--port", type=port_number(), default=8088, help="local port (default 8088)")
    p.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="IP",
        help="a node to reach the network through (repeatable; default: the nodes running on this machine, "
        "a local cluster's or its own)",
    )
    p.add_argument(
        "--idle-lock", type=float, default=10.0, metavar="MIN", help="lock after MIN idle minutes (default 10)"
    )
    p.add_argument("--open", action="store_true", help="open the link in the default browser")
    p.add_argument(
        "--secret-file",
        type=Path,
        metavar="PATH",
        help="take the link's secret from this file (the desktop stick's kiosk reads the same one) "
        "instead of a new random one",
    )
    p.add_argument(
        "--booted-stick",
        action="store_true",
        help="running on a booted BorgUSB stick: pages say whether the wallet is saved on the stick, "
        "and a button powers the machine off",
    )
    p.add_argument("--log-level", default="WARNING")
    return p


async def serve(args: argparse.Namespace) -> int:
    from .app import create_app
    from .launch import link, open_in_browser
    from .state import ConduitState
    from .web import NETWORK

    seeds = args.node or local_seeds()
    activated = listen_sockets()  # started by borgusb-conduit.socket on the first connection
    if activated:
        port = activated[0].getsockname()[1]
        if any(not ipaddress.ip_address(s.getsockname()[0]).is_loopback for s in activated):
            print("borgusb: the conduit only listens on loopback addresses", file=sys.stderr)
            return 1
    else:
        port = args.port
    args.keystore.parent.mkdir(parents=True, exist_ok=True)
    secret = read_secret(args.secret_file) if args.secret_file else None
    if args.secret_file and secret is None:
        print(f"borgusb: {args.secret_file} holds no usable secret (at least 32 URL-safe characters)", file=sys.stderr)
        return 1
    state = ConduitState(args.keystore, idle_lock_s=args.idle_lock * 60, secret=secret)
    app = create_app(state, seeds, port=port, booted_stick=stick_status() if args.booted_stick else None)
    follow = None if args.node else asyncio.ensure_future(follow_local_nodes(app[NETWORK]))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    for sock in activated:
        await web.SockSite(runner, sock).start()
    for host in () if activated else ("127.0.0.1", "::1"):
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            if host == "127.0.0.1":
                print(f"borgusb: cannot listen on 127.0.0.1:{port} ({exc.strerror})", file=sys.stderr)
                await runner.cleanup()
                return 1
    # the link is printed only now that this process holds the port: nobody else can be answering it
    url = link(port, state.secret)
    print(f"BorgHUIConduit is ready: open {url}", flush=True)
    print("(the link is the key to this conduit while it runs: do not share it)", flush=True)
    opened = open_in_browser(url) if args.open else None
    if args.open and opened is None:
        print("borgusb: no RAM directory to open the link from: open it yourself", file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if follow is not None:
            follow.cancel()
        await runner.cleanup()  # locks the wallet: keys zeroed
        if opened is not None:
            opened.unlink(missing_ok=True)
    return 0


def stick_status() -> Path:
    from ..image.writeback import STATUS

    return STATUS


def read_secret(path: Path) -> str | None:
    """A secret from a file: URL-safe characters only (it goes into a link's fragment), and long enough."""
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) >= 32 and re.fullmatch(r"[A-Za-z0-9_-]+", text) else None


def local_seeds() -> list[str]:
    """The nodes running on this machine; when none runs, its own addresses and a word on what to start."""
    found = find_nodes()
    if found:
        print(f"network: through {', '.join(found[:3])}{' …' if len(found) > 3 else ''} (running on this machine)")
        return found
    print(
        "borgusb conduit: no node runs on this machine: the wallet works, but Home and Files will say the "
        f"network is not reachable until one does. Start a local network with '{START_ONE}' (the conduit "
        "finds it within seconds), or name a node with --node IP",
        file=sys.stderr,
    )
    return machine_ips()


async def follow_local_nodes(network: Network, period_s: float = FOLLOW_S) -> None:
    """Without --node, the nodes running here are looked for again while the conduit runs: a local
    cluster started (or restarted) after the conduit is found at the pages' next refresh."""
    while True:
        await asyncio.sleep(period_s)
        found = await asyncio.to_thread(find_nodes)  # blocking connects, off the event loop
        seeds = found or machine_ips()
        if seeds != network.seeds:
            network.seeds = seeds


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.WARNING), stream=sys.stderr)
    return asyncio.run(serve(args))
