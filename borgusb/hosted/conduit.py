"""The per-stick conduit process of hosted mode.

Like ``borgusb conduit``, but the keystore is the RAM copy the watcher made
(a private tmpfs), and the process runs as a user of its own with no
capabilities (borgusb.hosted.users): it holds the unlocked wallet, and nothing
else on the machine is its. Creating or changing the wallet writes the new
keystore back to the stick through the watcher (borgusb.hosted.stickwrite),
which alone may touch the stick: written atomically, and if the stick is
pulled during the write, the person is told, the RAM copy is not changed, and
the stick holds the old keystore or the new one, never a mix.

``python3 -B -P -m borgusb.hosted.conduit --keystore RAMCOPY --port N --node IP --writer-fd FD``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from .. import keystore
from ..conduit.state import ConduitState
from ..identity import Wallet
from .stickwrite import RemoteWriter, StickWriteError

__all__ = ["HostedState", "StickWriteError", "main"]


class HostedState(ConduitState):
    """ConduitState whose keystore is a RAM copy; saves go to the stick first, then to the copy."""

    def __init__(self, keystore_path: Path, writer: Callable[[bytes], None], **kw) -> None:
        super().__init__(keystore_path, **kw)
        self.writer = writer

    can_replace_keystore = False  # the watcher never overwrites the stick's keystore (stickwrite.Writer)

    def _save_and_unlock(self, wallet: Wallet, passphrase: str, *, replace: bool = False) -> None:
        if self.has_keystore:
            raise ValueError("a keystore already exists on this stick; unlock it instead")
        keystore.check_new_passphrase(passphrase)
        entropy = wallet.entropy
        try:
            doc = keystore.encrypt(
                "wallet", entropy, passphrase, wallet.public.to_dict(), wallet.bip39_passphrase, self.kdf
            )
        finally:
            keystore.zero(entropy)
        data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
        self.writer(data)  # the stick first: if it fails, nothing changes here either
        keystore.atomic_write(self.keystore_path, data)
        self.lock()
        self.wallet = wallet
        self.touch()


async def serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from ..conduit.app import create_app
    from ..conduit.launch import link

    state = HostedState(Path(args.keystore), RemoteWriter(args.writer_fd), idle_lock_s=args.idle_lock * 60)
    app = create_app(state, args.node, port=args.port)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
    except OSError as exc:
        print(f"borgusb hosted: cannot listen on 127.0.0.1:{args.port} ({exc.strerror})", flush=True)
        await runner.cleanup()
        return 1
    try:
        await web.TCPSite(runner, "::1", args.port).start()
    except OSError:
        pass
    # the watcher reads the link (it carries the secret) from this line, on a pipe only it holds
    print(f"BorgHUIConduit is ready: open {link(args.port, state.secret)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()  # locks the wallet: keys zeroed
        state.lock()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="borgusb.hosted.conduit")
    p.add_argument("--keystore", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--node", action="append", default=[])
    p.add_argument("--writer-fd", type=int, required=True, help="the socket to the watcher, which writes the stick")
    p.add_argument("--idle-lock", type=float, default=10.0)
    return asyncio.run(serve(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
