"""`borgusb put/get/stat/rm`: objects in the shardTreeCell network.

    borgusb put FILE [--r 3]                 prints the object id (its SHA-256)
    borgusb get ID -o FILE                   DStream from the holders; resumes FILE.part
    borgusb stat ID [--json]                 size, shards, holders, copies (a health check)
    borgusb rm ID                            the owner's signed delete

``--node IP`` picks the shardTreeCell to talk to (default $BORGUSB_NODE or
127.0.0.1). Requests are signed by the owner:

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
from pathlib import Path
from typing import Any

from . import dna
from .clock import SystemClock
from .envelope import Verifier
from .keys import SigningKey
from .net.peer import PeerClient, PeerError

DNA = dna.get("shardTreeCell")


class CLIError(Exception):
    pass


def load_key(args: argparse.Namespace) -> SigningKey:
    if args.keystore:
        from .cli import read_passphrase
        from .keystore import load_wallet

        wallet = load_wallet(Path(args.keystore), read_passphrase(args))
        return wallet.key
    if args.key_file:
        path = Path(args.key_file)
        if path.exists():
            try:
                return SigningKey(bytes.fromhex(path.read_text().strip()))
            except ValueError as exc:
                raise CLIError(f"{path}: not a key file ({exc})") from None
        key = SigningKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            secret = key.secret_bytes()
            f.write(bytes(secret).hex() + "\n")
        return key
    if args.cmd in ("put", "rm"):
        print("borgusb: warning: no --keystore or --key-file: signing with a one-time key; "
              "what you store belongs to that key and cannot be deleted or replaced later", file=sys.stderr)
    return SigningKey.generate()


def _progress(desc: str, enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

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
                out = await put_file(peers, args.node, port, Path(args.file), key, r=args.r,
                                     ss=args.shard_size, window=args.window, progress=update)
            finally:
                close()
            if args.json:
                print(json.dumps(out))
            else:
                print(out["id"])
                if out["copies_min"] < out["r"]:
                    print(f"borgusb: warning: some shards have only {out['copies_min']} of {out['r']} copies",
                          file=sys.stderr)
            return 0
        if args.cmd == "get":
            from .dstream import Receiver, parse_locate

            reply = await peers.post(args.node, port, "/recp", "shard.locate", {"id": args.id}, signed_reply=True)
            m, holders = parse_locate(reply, args.id)
            update, close = _progress("get", not args.quiet)
            try:
                stats = await Receiver(peers, m, holders, Path(args.output), window=args.window,
                                       progress=update, stop_after=args.stop_after,
                                       throttle_ms=args.throttle_ms).run()
            finally:
                close()
            stats["copies_min"] = min(reply["copies"], default=m["r"])
            print(json.dumps(stats) if args.json else
                  f"{args.output}: {m['size']} bytes, {stats['fetched']} shards fetched, "
                  f"{stats['resumed']} already on disk, SHA-256 = id", file=sys.stdout if args.json else sys.stderr)
            return 0
        if args.cmd == "stat":
            reply = await peers.post(args.node, port, "/recp", "shard.stat", {"id": args.id}, signed_reply=True)
            if args.json:
                print(json.dumps(reply))
            elif not reply.get("found"):
                print(f"{args.id}: not found")
                return 1
            else:
                print(f"id       {reply['id']}\nsize     {reply['size']} bytes in {reply['shards']} shards "
                      f"of {reply['shard_size']}\nowner    {reply['owner']}\ncopies   min {reply['copies_min']} "
                      f"of R={reply['r']} (manifest {reply['manifest_copies']})\nholders  {', '.join(reply['holders'])}")
            return 0 if reply.get("found") else 1
        if args.cmd == "rm":
            from .shard.model import sign_tomb

            tomb = sign_tomb(key, args.id, clock.now_ms())
            reply = await peers.post(args.node, port, "/recp", "shard.delete", {"tomb": tomb}, signed_reply=True)
            print(json.dumps(reply) if args.json else f"deleted {args.id}")
            return 0
    raise CLIError(f"unknown command {args.cmd}")


def build_parser(cmd: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"borgusb {cmd}")
    if cmd == "put":
        p.add_argument("file")
        p.add_argument("--r", type=int, default=int(os.environ.get("BORGUSB_SHARD_R", 3)), help="copies (default 3)")
        p.add_argument("--shard-size", type=int, default=None, help="bytes per shard (default 256 KiB)")
    else:
        p.add_argument("id", help="the object id (SHA-256)")
    if cmd == "get":
        p.add_argument("-o", "--output", required=True, help="file to write (FILE.part while in progress)")
        p.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # tests: simulate an interruption
        p.add_argument("--throttle-ms", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--node", default=os.environ.get("BORGUSB_NODE", "127.0.0.1"), help="the cell to talk to")
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--keystore", help="sign as the person of this wallet keystore")
    p.add_argument("--passphrase-file", help="keystore passphrase from the first line of FILE")
    p.add_argument("--key-file", help="a plain key file (created if missing); for scripts")
    p.add_argument("--window", type=int, default=16, help="requests in flight (default 16)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


COMMANDS = ("put", "get", "stat", "rm")


def _which(argv: list[str]) -> tuple[str, list[str]]:
    """`borgusb put ...` reaches main(argv) without the command name: find it in sys.argv."""
    if argv and argv[0] in COMMANDS:
        return argv[0], argv[1:]
    for word in sys.argv[1:]:
        if word in COMMANDS:
            return word, argv
        if not word.startswith("-"):
            break
    raise CLIError("usage: borgusb put|get|stat|rm ...")


def main(argv: list[str], cmd: str | None = None) -> int:
    if cmd is None:
        try:
            cmd, argv = _which(argv)
        except CLIError as exc:
            print(f"borgusb: {exc}", file=sys.stderr)
            return 2
    args = build_parser(cmd).parse_args(argv)
    args.cmd = cmd
    if cmd == "put" and args.shard_size is None:
        from .shard.model import SHARD_SIZE

        args.shard_size = SHARD_SIZE
    try:
        return asyncio.run(_run(args))
    except (CLIError, PeerError, OSError, ValueError) as exc:
        print(f"borgusb {cmd}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # StreamError and friends
        print(f"borgusb {cmd}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
