"""The per-stick conduit process of hosted mode.

Like ``borgusb conduit``, but the keystore is the RAM copy the watcher made
(a private tmpfs), and creating or changing the wallet writes the new keystore
back to the stick: the data partition is mounted read-write for that one
write (in the watcher's private mount namespace), written atomically (temp
file, fsync, rename, fsync of the directory) and unmounted. If the stick is
pulled during the write, the person is told, the RAM copy is not changed, and
the stick holds the old keystore or the new one, never a mix.

``python3 -B -m borgusb.hosted.conduit --keystore RAMCOPY --port N --node IP
(--device DEV --fstype T --mountpoint DIR | --stick-dir DIR)``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from .. import keystore
from ..conduit.state import ConduitState
from ..identity import Wallet
from ..stick import KEYSTORE


class StickWriteError(ValueError):
    """A write to the stick failed (the conduit shows ValueError messages to the person)."""


class StickWriter:
    """Writes the keystore to the stick: through a short private read-write mount (or mtools), or into a directory."""

    def __init__(
        self,
        *,
        device: str | None = None,
        fstype: str = "vfat",
        mountpoint: Path | None = None,
        stick_dir: Path | None = None,
        mtools: bool = False,
    ) -> None:
        self.stick_dir = stick_dir
        self.fs = None
        if stick_dir is None:
            from .stickfs import StickFS

            assert device and mountpoint
            self.fs = StickFS(device, fstype, mountpoint, Path(os.environ.get("TMPDIR") or mountpoint.parent))
            if mtools:
                self.fs.backend = "mtools"

    def __call__(self, data: bytes) -> None:
        try:
            if self.fs is None:
                assert self.stick_dir is not None
                keystore.atomic_write(self.stick_dir / KEYSTORE, data)
            else:
                self.fs.write_atomic(KEYSTORE, data)
        except OSError as exc:
            raise StickWriteError(
                f"the wallet could not be written to the stick ({exc.strerror or exc}): was it pulled out? "
                "Nothing was lost: the stick still holds its previous keystore (or none). "
                "Insert it again and repeat."
            ) from None


class HostedState(ConduitState):
    """ConduitState whose keystore is a RAM copy; saves go to the stick first, then to the copy."""

    def __init__(self, keystore_path: Path, writer: Callable[[bytes], None], **kw) -> None:
        super().__init__(keystore_path, **kw)
        self.writer = writer

    def _save_and_unlock(self, wallet: Wallet, passphrase: str) -> None:
        if self.has_keystore:
            raise ValueError("a keystore already exists on this stick; unlock it instead")
        if len(passphrase) < 8:
            raise ValueError("choose a passphrase of at least 8 characters")
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

    if args.stick_dir:
        writer = StickWriter(stick_dir=Path(args.stick_dir))
    else:
        writer = StickWriter(
            device=args.device, fstype=args.fstype, mountpoint=Path(args.mountpoint), mtools=args.mtools
        )
    state = HostedState(Path(args.keystore), writer, idle_lock_s=args.idle_lock * 60)
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
    p.add_argument("--device")
    p.add_argument("--fstype", default="vfat")
    p.add_argument("--mountpoint")
    p.add_argument("--stick-dir")
    p.add_argument("--mtools", action="store_true", help="the kernel cannot mount the stick: write with mtools")
    p.add_argument("--idle-lock", type=float, default=10.0)
    args = p.parse_args(argv)
    if not args.stick_dir and not (args.device and args.mountpoint):
        p.error("give --stick-dir, or --device and --mountpoint")
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
