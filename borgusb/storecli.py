"""`borgusb put/get/stat/rm`: objects in the shardTreeCell network.

    borgusb put FILE [--r 3]                 prints the object id (the SHA-256 of its shard list)
    borgusb get ID -o FILE                   DStream from the holders; resumes FILE.part
    borgusb stat ID [--json]                 size, shards, holders, copies (a health check)
    borgusb rm ID                            the owner's signed delete

``--node IP`` picks the shardTreeCell to talk to (default $BORGUSB_NODE). Without
either, the command finds one by itself (`clitools.find_node`): the first live
node of a local cluster (``borgusb cluster up``, from the cluster's state files),
else this machine's own node; when none answers it says so and what to start.
Exit codes are `clitools.EXIT_CODES`. Requests are signed by the owner:

* ``--keystore PATH [--passphrase-file F]``: the person's wallet key;
* ``--key-file PATH``: a plain secp256k1 key file (created on first use, mode
  0600, 64 hex digits; for scripts and tests; not encrypted);
* neither: a fresh key for this one command, with a warning, because what
  it stores belongs to that key and can never be deleted or replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from . import dna
from .cells.shard.client import locate_through_heal
from .clitools import EXIT_CODES, EXIT_FAIL, EXIT_OK, EXIT_USAGE, CLIError, existing_keystore, find_node, port_number
from .clitools import run as run_command
from .clock import SystemClock
from .envelope import Verifier
from .keys import SigningKey
from .net.peer import PeerClient, PeerRejected
from .shard.model import SHARD_SIZE

DNA = dna.get("shardTreeCell")


def load_key(args: argparse.Namespace) -> SigningKey:
    if args.keystore:
        from .cli import read_passphrase
        from .keystore import load_wallet

        wallet = load_wallet(existing_keystore(args.keystore), read_passphrase(args))
        return wallet.key
    if args.key_file:
        path = Path(args.key_file)
        if path.exists():
            try:
                return SigningKey(bytes.fromhex(path.read_text().strip()))
            except ValueError as exc:
                raise CLIError(f"{path}: not a key file ({exc})", EXIT_USAGE) from None
        key = SigningKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            secret = key.secret_bytes()
            f.write(bytes(secret).hex() + "\n")
        return key
    if args.cmd in ("put", "rm"):
        print(
            "borgusb: warning: no --keystore or --key-file: signing with a one-time key; "
            "what you store belongs to that key and cannot be deleted or replaced later",
            file=sys.stderr,
        )
    return SigningKey.generate()


def size_text(n: float) -> str:
    """1 MiB, 256 KiB, 3.5 GiB, 17 B: sizes as a person reads them."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:g} {unit}" if unit == "B" or n == int(n) else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


class ProgressLine:
    """The progress display when tqdm is absent (the USB image removes it).

    On a terminal one line is rewritten in place, at most ten times a second;
    anywhere else (a log, a pipe, a CI job) a line is printed at each quarter of
    the transfer and a final one, so the output stays short and readable.
    """

    def __init__(self, desc: str, stream: TextIO, *, tty: bool | None = None) -> None:
        self.desc, self.stream = desc, stream
        self.tty = stream.isatty() if tty is None else tty
        self.start = time.monotonic()
        self.done = self.total = 0
        self._shown_at = 0.0
        self._quarter = 0
        self._closed = False

    def _text(self) -> str:
        pct = 100 * self.done // self.total if self.total else 100
        secs = max(time.monotonic() - self.start, 1e-6)
        return (
            f"{self.desc}: {size_text(self.done)} of {size_text(self.total)} ({pct}%), "
            f"{size_text(round(self.done / secs))}/s"
        )

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if self.tty:
            now = time.monotonic()
            if now - self._shown_at >= 0.1:
                self._shown_at = now
                self.stream.write("\r" + self._text() + "\x1b[K")
                self.stream.flush()
            return
        quarter = 4 * done // total if total else 4
        if 0 < quarter < 4 and quarter > self._quarter:  # 100% is the final line's
            self._quarter = quarter
            print(self._text(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.total or self.done:
            print(
                ("\r" if self.tty else "") + self._text() + ("\x1b[K" if self.tty else ""), file=self.stream, flush=True
            )


def _progress(desc: str, enabled: bool) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    if not enabled:
        return None, lambda: None
    try:
        from tqdm import tqdm
    except ImportError:  # the USB image removes tqdm (image/mkosi.postinst.chroot)
        line = ProgressLine(desc, sys.stderr)
        return line.update, line.close

    bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, file=sys.stderr, leave=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


async def _run(args: argparse.Namespace) -> int:
    key = load_key(args)
    clock = SystemClock()
    port = args.port or DNA.recp_port
    async with PeerClient(key, clock, Verifier(clock), timeout_s=args.timeout) as peers:
        if args.cmd == "put":
            from .dstream import put_file

            update, close = _progress("put", not args.quiet)
            try:
                out = await put_file(
                    peers,
                    args.node,
                    port,
                    Path(args.file),
                    key,
                    r=args.r,
                    ss=args.shard_size,
                    window=args.window or 16,
                    progress=update,
                )
            finally:
                close()
            if args.json:
                print(json.dumps(out))
            else:
                print(out["id"])
                if out["copies_min"] < out["r"]:
                    print(
                        f"borgusb: warning: some shards have only {out['copies_min']} of {out['r']} copies",
                        file=sys.stderr,
                    )
            return EXIT_OK
        if args.cmd == "get":
            from .dstream import Receiver, parse_locate

            reply = await locate_through_heal(peers, args.node, port, args.id, on_wait=_healing_notice(args))
            m, holders = parse_locate(reply, args.id)
            update, close = _progress("get", not args.quiet)
            receiver = Receiver(
                peers,
                m,
                holders,
                Path(args.output),
                window=args.window,
                progress=update,
                stop_after=args.stop_after,
                throttle_ms=args.throttle_ms,
            )
            try:
                stats = await receiver.run()
            finally:
                close()
            stats["receipts"] = await receiver.receipts_handed()  # the holders' evidence for the serve reward
            stats["copies_min"] = min(reply["copies"], default=m["r"])
            print(
                json.dumps(stats)
                if args.json
                else f"{args.output}: {m['size']} bytes, {stats['fetched']} shards fetched, "
                f"{stats['resumed']} already on disk, every shard checked against the id",
                file=sys.stdout if args.json else sys.stderr,
            )
            return EXIT_OK
        if args.cmd == "stat":
            reply = await locate_through_heal(
                peers, args.node, port, args.id, what="shard.stat", on_wait=_healing_notice(args)
            )
            if args.json:
                print(json.dumps(reply))
            elif not reply.get("found"):
                print(f"{args.id}: not found")
                return EXIT_FAIL
            else:
                print(
                    f"id       {reply['id']}\nsize     {reply['size']} bytes in {reply['shards']} shards "
                    f"of {reply['shard_size']}\nowner    {reply['owner']} "
                    f"{_whose(reply['owner'], key, args)}\ncopies   min {reply['copies_min']} "
                    f"of R={reply['r']} (manifest {reply['manifest_copies']})\nholders  {', '.join(reply['holders'])}"
                )
            return EXIT_OK if reply.get("found") else EXIT_FAIL
        if args.cmd == "rm":
            from .shard.model import sign_tomb

            tomb = sign_tomb(key, args.id, clock.now_ms())
            reply = await peers.post(args.node, port, "/recp", "shard.delete", {"tomb": tomb}, signed_reply=True)
            done = f"deleted {args.id}: the node checked that it is yours and sent your delete to every shard node"
            print(json.dumps(reply) if args.json else done)
            return EXIT_OK
    raise CLIError(f"unknown command {args.cmd}")


def _healing_notice(args: argparse.Namespace) -> Callable[[PeerRejected], None]:
    """Say once, on stderr, that the read waits for the network to heal (`locate_through_heal`)."""
    said: list[bool] = []

    def notice(exc: PeerRejected) -> None:
        if not said and not args.quiet:
            said.append(True)
            print(f"borgusb: the network is healing; asking again ({exc.detail})", file=sys.stderr)

    return notice


def _whose(owner: str, key: SigningKey, args: argparse.Namespace) -> str:
    """Whose the object is, beside its owner's key, when the command was given the person's key."""
    if not (args.keystore or args.key_file):
        return ""
    return "(your key)" if owner == key.public_key_hex else "(another key: only it can replace or delete this object)"


def build_parser(cmd: str) -> argparse.ArgumentParser:
    from .cli import (
        COMMANDS,  # the one table of commands and their help (imports no command)
    )

    p = argparse.ArgumentParser(prog=f"borgusb {cmd}", description=COMMANDS[cmd].help)
    if cmd == "put":
        p.add_argument("file")
        p.add_argument("--r", type=int, default=int(os.environ.get("BORGUSB_SHARD_R", 3)), help="copies (default 3)")
        p.add_argument(
            "--shard-size",
            type=int,
            default=SHARD_SIZE,
            metavar="BYTES",
            help=f"bytes per shard (default {SHARD_SIZE}, {size_text(SHARD_SIZE)})",
        )
    else:
        p.add_argument("id", help="the object id (the SHA-256 of its shard list, as put printed it)")
    if cmd == "get":
        p.add_argument("-o", "--output", required=True, help="file to write (FILE.part while in progress)")
        p.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # tests: simulate an interruption
        p.add_argument("--throttle-ms", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument(
        "--node",
        metavar="IP",
        default=os.environ.get("BORGUSB_NODE") or None,
        help=f"the {DNA.name} to talk to (default $BORGUSB_NODE, else the first live node of a local "
        "cluster, else this machine's own node)",
    )
    p.add_argument("--port", type=port_number(), help=argparse.SUPPRESS)
    p.add_argument("--keystore", help="sign as the person of this wallet keystore")
    p.add_argument("--passphrase-file", help="keystore passphrase from the first line of FILE")
    p.add_argument("--key-file", help="a plain key file (created if missing); for scripts")
    p.add_argument(
        "--window", type=int, help="requests in flight (put: default 16; get: default 16 per holder, at most 32)"
    )
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


COMMANDS = ("put", "get", "stat", "rm")


def main(argv: list[str], cmd: str | None = None) -> int:
    """`borgusb CMD ARGS`: cmd names the command (cli.py's table passes it); without it, argv[0] does."""
    if cmd is None:
        if not argv or argv[0] not in COMMANDS:
            print("usage: borgusb put|get|stat|rm ...", file=sys.stderr)
            return 2
        cmd, argv = argv[0], argv[1:]
    parser = build_parser(cmd)
    parser.epilog = EXIT_CODES
    args = parser.parse_args(argv)
    args.cmd = cmd

    def body() -> int:
        _check_paths(args)
        if args.node is None:
            args.node = find_node(DNA.name, args.port or DNA.recp_port)
        return asyncio.run(_run(args))

    return run_command(f"borgusb {cmd}", DNA.name, body)


def _check_paths(args: argparse.Namespace) -> None:
    """The local files named, before any node is looked for: a typo is a usage error, said at once."""
    if args.keystore:
        existing_keystore(args.keystore)
    if args.cmd == "put":
        path = Path(args.file)
        if path.is_dir():
            raise CLIError(f"{path} is a directory: put stores one file (pack a directory first, e.g. tar)", EXIT_USAGE)
        if not path.is_file():
            raise CLIError(f"{path}: no such file", EXIT_USAGE)
    elif args.cmd == "get" and Path(args.output).is_dir():
        raise CLIError(f"{args.output} is a directory: name the file to write, e.g. -o {args.output}/NAME", EXIT_USAGE)


def put(argv: list[str]) -> int:
    return main(argv, "put")


def get(argv: list[str]) -> int:
    return main(argv, "get")


def stat(argv: list[str]) -> int:
    return main(argv, "stat")


def rm(argv: list[str]) -> int:
    return main(argv, "rm")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
