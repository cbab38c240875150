"""`borgusb files ls|put|get|mkdir|mv|rm|versions|restore|share`: a person's folders in the network.

    borgusb files ls [PATH]                        the folder's entries
    borgusb files put LOCAL [PATH] [--public]      a file into the tree (encrypted unless --public)
    borgusb files get PATH -o OUT                  a file out of the tree (decrypted here)
    borgusb files mkdir PATH [--public]            a new folder
    borgusb files mv PATH NEWPATH                  rename or move (a tombstone stays behind)
    borgusb files rm PATH                          remove (a tombstone)
    borgusb files versions [PATH]                  the folder's earlier versions, newest first
    borgusb files restore PATH --version OID       the folder as it was, as a new version
    borgusb files share PATH --to KEY [-o FILE]    read-only for KEY; --revoke KEY for later versions
    borgusb files ls|get --share FILE ...          what someone shared with this key

Everything is found from the person's key alone (the root pointer, `files.root`), and private
bytes are encrypted and decrypted in this process: the nodes keep ciphertext. ``--node``,
``--keystore``/``--key-file`` and the exit codes are as for ``borgusb put`` (`storecli`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from . import dna
from .clitools import EXIT_CODES, EXIT_OK, EXIT_USAGE, CLIError, add_wallet_options, find_node, require_wallet
from .clitools import run as run_command
from .clock import SystemClock
from .envelope import Verifier
from .files import actions
from .files.errors import BadName, FilesError, Malformed
from .files.remote import FileTree, as_dict
from .files.share import Share, parse_share
from .keys import SigningKey, is_public_key_hex
from .net.peer import PeerClient
from .storecli import _progress, load_key, size_text

DNA = dna.get("ftreeFileMgrCell")
SUBCOMMANDS = ("ls", "put", "get", "mkdir", "mv", "rm", "versions", "restore", "share")


def _usage(exc: FilesError) -> CLIError:
    return CLIError(str(exc), EXIT_USAGE)


def _print_rows(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows))
        return
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["mtime"] / 1000))
        name = r["name"] + ("/" if r["kind"] == "folder" else "")
        size = "-" if r["kind"] == "folder" else size_text(r["size"])
        print(f"{size:>10}  {when}  {'private' if r['private'] else 'public ':7}  {name}")


def _share_record(args: argparse.Namespace) -> Share:
    try:
        return parse_share(Path(args.share).read_bytes().strip())
    except OSError as exc:
        raise CLIError(f"{args.share}: {exc.strerror}", EXIT_USAGE) from None


async def c_ls(tree: FileTree, args: argparse.Namespace) -> int:
    if args.share:
        share = _share_record(args)
        try:
            level = await actions.shared(tree, share)
        except actions.NotForYou as exc:
            raise _usage(exc) from None
        entries = level.entries if level is not None else {share.name: share.entry}
    else:
        entries = (await actions.folder(tree, args.path)).entries
    _print_rows(as_dict(entries), args.json)
    return EXIT_OK


async def c_put(tree: FileTree, args: argparse.Namespace) -> int:
    local = Path(args.local)
    if not local.is_file():
        raise CLIError(f"{local}: no such file", EXIT_USAGE)
    update, close = _progress("put", not args.quiet)
    try:
        path, oid = await actions.put(tree, local, args.path or "", public=args.public, progress=update)
    except BadName as exc:
        raise _usage(exc) from None
    finally:
        close()
    print(json.dumps({"path": path, "obj": oid}) if args.json else path)
    return EXIT_OK


async def c_get(tree: FileTree, args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.is_dir():
        raise CLIError(f"{out} is a directory: name the file to write", EXIT_USAGE)
    if args.share:
        share = _share_record(args)
        if share.entry.kind == "folder" and not (args.path or "").strip("/"):
            raise CLIError("name the file inside the shared folder", EXIT_USAGE)
        try:
            entry = await actions.shared_entry(tree, share, args.path or "")
        except actions.NotForYou as exc:
            raise _usage(exc) from None
    else:
        if not args.path:
            raise CLIError("name the file to get", EXIT_USAGE)
        try:
            actions.parent_of(args.path)
        except FilesError as exc:
            raise _usage(exc) from None
        entry = await actions.entry_at(tree, args.path)
    if entry.kind != "file":
        raise CLIError("that is a folder: get takes a file", EXIT_USAGE)
    update, close = _progress("get", not args.quiet)
    try:
        await actions.get(tree, entry, out, update)
    finally:
        close()
    if not args.quiet:
        print(f"{out}: {entry.size} bytes{', decrypted here' if entry.private else ''}", file=sys.stderr)
    return EXIT_OK


def _paths(*paths: str) -> None:
    try:
        for path in paths:
            actions.parent_of(path)
    except FilesError as exc:
        raise _usage(exc) from None


async def c_mkdir(tree: FileTree, args: argparse.Namespace) -> int:
    _paths(args.path)
    await actions.mkdir(tree, args.path, public=args.public)
    return EXIT_OK


async def c_mv(tree: FileTree, args: argparse.Namespace) -> int:
    _paths(args.src, args.dst)
    try:
        await actions.move(tree, args.src, args.dst)
    except BadName as exc:
        raise _usage(exc) from None
    return EXIT_OK


async def c_rm(tree: FileTree, args: argparse.Namespace) -> int:
    _paths(args.path)
    await actions.remove(tree, args.path)
    return EXIT_OK


async def c_versions(tree: FileTree, args: argparse.Namespace) -> int:
    rows = await actions.versions(tree, args.path, args.limit)
    if args.json:
        print(json.dumps(rows))
    for r in [] if args.json else rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"] / 1000))
        print(f"{r['version']:>5}  {when}  {r['machine'][:20]:20}  {r['entries']:>5} entries  {r['obj']}")
    return EXIT_OK


async def c_restore(tree: FileTree, args: argparse.Namespace) -> int:
    try:
        await actions.restore(tree, args.path, args.version)
    except Malformed as exc:
        if "another folder" in str(exc):
            raise CLIError(f"{exc} (see borgusb files versions PATH)", EXIT_USAGE) from None
        raise
    return EXIT_OK


async def c_share(tree: FileTree, args: argparse.Namespace) -> int:
    who = args.to or args.revoke
    if not is_public_key_hex(who):
        raise CLIError("--to/--revoke take a public key (66 hex digits)", EXIT_USAGE)
    try:
        share = await actions.share(tree, args.path, who, revoke=bool(args.revoke))
    except Malformed as exc:
        if "file share" in str(exc):
            raise _usage(exc) from None
        raise
    if share is None:
        return EXIT_OK
    data = share.encode().decode()
    if args.output:
        Path(args.output).write_text(data + "\n")
    else:
        print(data)
    return EXIT_OK


RUN = {
    "ls": c_ls,
    "put": c_put,
    "get": c_get,
    "mkdir": c_mkdir,
    "mv": c_mv,
    "rm": c_rm,
    "versions": c_versions,
    "restore": c_restore,
    "share": c_share,
}


def build_parser() -> argparse.ArgumentParser:
    from .cli import COMMANDS

    p = argparse.ArgumentParser(prog="borgusb files", description=COMMANDS["files"].help, epilog=EXIT_CODES)
    sub = p.add_subparsers(dest="cmd", required=True)
    subs = {name: sub.add_parser(name) for name in SUBCOMMANDS}
    subs["ls"].add_argument("path", nargs="?", default="/")
    subs["put"].add_argument("local", help="the file to store")
    subs["put"].add_argument("path", nargs="?", help="where in the tree (default /NAME; a folder: into it)")
    subs["get"].add_argument("path", nargs="?", help="the file (with --share: inside the shared folder)")
    subs["get"].add_argument("-o", "--output", required=True)
    for name in ("ls", "get"):
        subs[name].add_argument("--share", metavar="FILE", help="a share record someone gave this key")
    for name in ("put", "mkdir"):
        subs[name].add_argument("--public", action="store_true", help="readable by anyone with the id")
    subs["mkdir"].add_argument("path")
    subs["mv"].add_argument("src")
    subs["mv"].add_argument("dst")
    subs["rm"].add_argument("path")
    subs["versions"].add_argument("path", nargs="?", default="/")
    subs["versions"].add_argument("--limit", type=int, default=20)
    subs["restore"].add_argument("path")
    subs["restore"].add_argument("--version", required=True, metavar="OID", help="from borgusb files versions")
    subs["share"].add_argument("path")
    who = subs["share"].add_mutually_exclusive_group(required=True)
    who.add_argument("--to", metavar="KEY")
    who.add_argument("--revoke", metavar="KEY", help="leave KEY out of the folder's next versions")
    subs["share"].add_argument("-o", "--output", metavar="FILE", help="write the share record here")
    for sp in subs.values():
        add_wallet_options(sp, DNA.name, "the person's wallet keystore", "per-request timeout in seconds")
        sp.add_argument("--machine", default=socket.gethostname()[:64], help="this machine's name in versions")
        sp.add_argument("--r", type=int, default=int(os.environ.get("BORGUSB_SHARD_R", 3)), help="copies")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


async def _run(args: argparse.Namespace) -> int:
    key: SigningKey = load_key(args)
    clock = SystemClock()
    async with PeerClient(key, clock, Verifier(clock), timeout_s=args.timeout) as peers:
        tree = FileTree(peers, args.node, key, machine=args.machine, r=args.r)
        try:
            return await RUN[args.cmd](tree, args)
        except FilesError as exc:
            raise CLIError(f"{exc.reason}: {exc}") from None
        finally:
            tree.close()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        require_wallet(args, "files are a person's")
        if args.node is None:
            args.node = find_node(DNA.name, DNA.recp_port)
        return asyncio.run(_run(args))

    return run_command(f"borgusb files {args.cmd}", DNA.name, body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
