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
import mimetypes
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from . import dna
from .clitools import EXIT_CODES, EXIT_OK, EXIT_USAGE, CLIError, add_wallet_options, existing_keystore, find_node
from .clitools import run as run_command
from .clock import SystemClock
from .envelope import Verifier
from .files import ops, stream
from .files.entry import Entry, check_name
from .files.errors import FilesError
from .files.remote import FileTree, Level, as_dict, decrypt_file, encrypt_file, split
from .files.share import Share, make_share, parse_share
from .keys import SigningKey
from .ledger.accounts import is_account
from .net.peer import PeerClient
from .storecli import _progress, load_key, size_text

DNA = dna.get("ftreeFileMgrCell")
SUBCOMMANDS = ("ls", "put", "get", "mkdir", "mv", "rm", "versions", "restore", "share")


def _parent(path: str) -> tuple[list[str], str]:
    names = split(path)
    if not names:
        raise CLIError("name a file or folder below the root, e.g. /docs/notes.txt", EXIT_USAGE)
    try:
        check_name(names[-1])
    except FilesError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
    return names[:-1], names[-1]


def _print_rows(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows))
        return
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["mtime"] / 1000))
        name = r["name"] + ("/" if r["kind"] == "folder" else "")
        size = "-" if r["kind"] == "folder" else size_text(r["size"])
        print(f"{size:>10}  {when}  {'private' if r['private'] else 'public ':7}  {name}")


async def _entry(tree: FileTree, path: str) -> tuple[list[str], str, Entry]:
    parent, leaf = _parent(path)
    _, root = await tree.head()
    chain = await tree.walk(root, parent)
    return parent, leaf, ops.get(chain[-1].entries, leaf)


async def _shared(tree: FileTree, args: argparse.Namespace) -> tuple[Share, Level | None]:
    try:
        share = parse_share(Path(args.share).read_bytes().strip())
    except OSError as exc:
        raise CLIError(f"{args.share}: {exc.strerror}", EXIT_USAGE) from None
    if share.to != tree.owner:
        raise CLIError(f"this share is for {share.to[:16]}..., not for this key", EXIT_USAGE)
    if share.entry.kind != "folder":
        return share, None
    return share, await tree.open_level(share.entry.obj, owner=share.owner)


async def _download(tree: FileTree, entry: Entry, out: Path, quiet: bool) -> None:
    if entry.kind != "file":
        raise CLIError("that is a folder: get takes a file", EXIT_USAGE)
    cipher = tree.tmp / "get.bin"
    update, close = _progress("get", not quiet)
    try:
        await tree.get_path(entry.obj, cipher, update)
    finally:
        close()
    if entry.private:
        await asyncio.to_thread(decrypt_file, bytes.fromhex(entry.key), cipher, out)
    else:
        shutil.move(cipher, out)


async def c_ls(tree: FileTree, args: argparse.Namespace) -> int:
    if args.share:
        share, level = await _shared(tree, args)
        entries = level.entries if level is not None else {share.name: share.entry}
    else:
        _, root = await tree.head()
        entries = (await tree.walk(root, split(args.path)))[-1].entries
    _print_rows(as_dict(entries), args.json)
    return EXIT_OK


async def c_put(tree: FileTree, args: argparse.Namespace) -> int:
    local = Path(args.local)
    if not local.is_file():
        raise CLIError(f"{local}: no such file", EXIT_USAGE)
    dest = args.path or "/" + local.name
    _, root = await tree.head()
    try:  # an existing folder: the file goes into it under its own name
        await tree.walk(root, split(dest))
        dest = dest.rstrip("/") + "/" + local.name
    except FilesError:
        pass
    parent, leaf = _parent(dest)
    key = None if args.public else stream.new_key()
    upload = local
    if key is not None:
        upload = tree.tmp / "put.bin"
        await asyncio.to_thread(encrypt_file, key, local, upload)
    update, close = _progress("put", not args.quiet)
    try:
        oid = await tree.put_path(upload, update)
    finally:
        close()
    kind = mimetypes.guess_type(local.name)[0] or "application/octet-stream"
    entry = Entry("file", oid, local.stat().st_size, kind[:100], tree.now(), key.hex() if key else "")
    await tree.change(parent, lambda e: ops.put(e, leaf, entry))
    print(
        json.dumps({"path": "/" + "/".join([*parent, leaf]), "obj": oid})
        if args.json
        else f"/{'/'.join([*parent, leaf])}"
    )
    return EXIT_OK


async def c_get(tree: FileTree, args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.is_dir():
        raise CLIError(f"{out} is a directory: name the file to write", EXIT_USAGE)
    if args.share:
        share, level = await _shared(tree, args)
        if level is None:
            entry = share.file_entry(tree.key)
        else:
            names = split(args.path or "")
            if not names:
                raise CLIError("name the file inside the shared folder", EXIT_USAGE)
            chain = await tree.walk(level, names[:-1])
            entry = ops.get(chain[-1].entries, names[-1])
    else:
        if not args.path:
            raise CLIError("name the file to get", EXIT_USAGE)
        _, _, entry = await _entry(tree, args.path)
    await _download(tree, entry, out, args.quiet)
    if not args.quiet:
        print(f"{out}: {entry.size} bytes{', decrypted here' if entry.private else ''}", file=sys.stderr)
    return EXIT_OK


async def c_mkdir(tree: FileTree, args: argparse.Namespace) -> int:
    parent, leaf = _parent(args.path)
    level = await tree.write_level(None, {}, public=args.public, parents=())
    await tree.change(parent, lambda e: ops.put(e, leaf, tree.folder_entry(level), replace=False))
    return EXIT_OK


async def c_mv(tree: FileTree, args: argparse.Namespace) -> int:
    (src, name), (dst, new) = _parent(args.src), _parent(args.dst)
    if src == dst:
        await tree.change(src, lambda e: ops.rename(e, name, new, tree.now()))
        return EXIT_OK
    if dst[: len(src) + 1] == [*src, name]:
        raise CLIError("a folder cannot move into itself", EXIT_USAGE)
    _, _, entry = await _entry(tree, args.src)
    await tree.change(dst, lambda e: ops.put(e, new, entry, replace=False))  # the copy first: nothing lost
    await tree.change(src, lambda e: ops.remove(e, name, tree.now()))
    return EXIT_OK


async def c_rm(tree: FileTree, args: argparse.Namespace) -> int:
    parent, leaf = _parent(args.path)
    await tree.change(parent, lambda e: ops.remove(e, leaf, tree.now()))
    return EXIT_OK


async def c_versions(tree: FileTree, args: argparse.Namespace) -> int:
    _, root = await tree.head()
    level: Level | None = (await tree.walk(root, split(args.path)))[-1]
    rows: list[dict[str, Any]] = []
    while level is not None and level.oid and len(rows) < args.limit:
        f = level.folder
        rows.append(
            {
                "version": f.version,
                "obj": level.oid,
                "ts": f.ts,
                "machine": f.machine,
                "entries": len(ops.live(level.entries)),
                "parents": list(f.parents),
            }
        )
        level = await tree.open_level(f.parents[0]) if f.parents else None
    if args.json:
        print(json.dumps(rows))
    for r in [] if args.json else rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"] / 1000))
        print(f"{r['version']:>5}  {when}  {r['machine'][:20]:20}  {r['entries']:>5} entries  {r['obj']}")
    return EXIT_OK


async def c_restore(tree: FileTree, args: argparse.Namespace) -> int:
    names = split(args.path)
    _, root = await tree.head()
    current = (await tree.walk(root, names))[-1]
    old = await tree.open_level(args.version)
    if current.oid and old.folder.folder != current.folder.folder:
        raise CLIError("that version is of another folder (see borgusb files versions PATH)", EXIT_USAGE)
    await tree.change(names, lambda e: ops.restore(e, old.entries, tree.now()))
    return EXIT_OK


async def c_share(tree: FileTree, args: argparse.Namespace) -> int:
    who = args.to or args.revoke
    if not is_account(who):
        raise CLIError("--to/--revoke take a public key (66 hex digits)", EXIT_USAGE)
    names = split(args.path)
    _, root = await tree.head()
    target = (await tree.walk(root, names[:-1]))[-1].entries.get(names[-1]) if names else None
    if target is not None and target.kind == "file":
        if args.revoke:
            raise CLIError("a file share covers the version shared: put a new version to leave it behind", EXIT_USAGE)
        share = make_share(tree.key, who, names[-1], target, tree.now())
    else:
        chain = await tree.walk(root, names)
        readers = set(chain[-1].folder.readers) - {tree.owner} if chain[-1].oid else set()
        readers = readers - {who} if args.revoke else readers | {who}
        new_root = await tree.change(names, dict, readers)
        folder = (await tree.walk(new_root, names))[-1]
        if args.revoke:
            return EXIT_OK
        share = make_share(tree.key, who, names[-1] if names else "/", tree.folder_entry(folder), tree.now())
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
        if not (args.keystore or args.key_file):
            raise CLIError("files are a person's: give --keystore (or --key-file)", EXIT_USAGE)
        if args.keystore:
            existing_keystore(args.keystore)
        if args.node is None:
            args.node = find_node(DNA.name, DNA.recp_port)
        return asyncio.run(_run(args))

    return run_command(f"borgusb files {args.cmd}", DNA.name, body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
