"""What a person does with their tree, each as one call on a `FileTree`: the CLI (`filescli`) and the
conduit's Files page (`cells.ftree.web`) both run these, so a folder is made, a file moved or a
version restored the same way from either. Each refuses with a `FilesError` (its reason word);
private bytes are encrypted and decrypted here, in the process that holds the wallet.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
from pathlib import Path
from typing import Any

from . import ops, stream
from .entry import Entry, check_name
from .errors import BadName, FilesError, Malformed, NotFound
from .remote import FileTree, Level, Progress, decrypt_in_place, encrypt_file, split
from .share import Share, make_share


class NotForYou(FilesError):
    """A share record made for another key than this one."""

    reason = "not_for_you"


def parent_of(path: str) -> tuple[list[str], str]:
    """(the folder's names, the leaf's name) of a path below the root; `BadName` for the root or a bad name."""
    names = split(path)
    if not names:
        raise BadName("name a file or folder below the root, e.g. /docs/notes.txt")
    return names[:-1], check_name(names[-1])


async def folder(tree: FileTree, path: str) -> Level:
    """The folder at `path` as the network has it now."""
    _, root = await tree.head()
    return (await tree.walk(root, split(path)))[-1]


async def entry_at(tree: FileTree, path: str) -> Entry:
    parent, leaf = parent_of(path)
    return ops.get((await folder(tree, "/".join(parent))).entries, leaf)


async def mkdir(tree: FileTree, path: str, *, public: bool) -> None:
    parent, leaf = parent_of(path)
    level = await tree.write_level(None, {}, public=public, parents=())
    await tree.change(parent, lambda e: ops.put(e, leaf, tree.folder_entry(level), replace=False))


async def put(
    tree: FileTree, local: Path, path: str, *, public: bool, name: str | None = None, progress: Progress = None
) -> tuple[str, str]:
    """`local` stored at `path` (into it, under `name` or the file's own name, when `path` is a folder);
    encrypted with a fresh key unless `public`. (The path stored at, the object id.)"""
    name = name or local.name
    dest = path or "/" + name
    try:  # an existing folder: the file goes into it under its own name
        await folder(tree, dest)
        dest = dest.rstrip("/") + "/" + name
    except FilesError:
        pass
    parent, leaf = parent_of(dest)
    key = None if public else stream.new_key()
    upload = local
    if key is not None:
        upload = tree.tmp / f"put-{leaf.encode().hex()[:32]}.bin"
        await asyncio.to_thread(encrypt_file, key, local, upload)
    try:
        oid = await tree.put_path(upload, progress)
    finally:
        if upload != local:
            upload.unlink(missing_ok=True)
    kind = mimetypes.guess_type(leaf)[0] or "application/octet-stream"
    entry = Entry("file", oid, local.stat().st_size, kind[:100], tree.now(), key.hex() if key else "")
    await tree.change(parent, lambda e: ops.put(e, leaf, entry))
    return "/" + "/".join([*parent, leaf]), oid


async def get(tree: FileTree, entry: Entry, out: Path, progress: Progress = None) -> None:
    """The file `entry` names, written to `out` (decrypted here when private: the ciphertext lands
    beside `out`, on the same file system, and is decrypted over itself into it)."""
    if entry.kind != "file":
        raise Malformed("that is a folder: get takes a file")
    if not entry.private:
        await tree.get_path(entry.obj, out, progress)
        return
    cipher = out.with_name(f".{out.name[:100]}.{os.urandom(4).hex()}.sealed")
    try:
        await tree.get_path(entry.obj, cipher, progress)
        await asyncio.to_thread(decrypt_in_place, bytes.fromhex(entry.key), cipher, out)
    finally:
        cipher.unlink(missing_ok=True)


async def move(tree: FileTree, src: str, dst: str) -> None:
    """Rename (same folder) or move (to another folder: the copy first, so nothing is lost)."""
    (src_dir, name), (dst_dir, new) = parent_of(src), parent_of(dst)
    if src_dir == dst_dir:
        await tree.change(src_dir, lambda e: ops.rename(e, name, new, tree.now()))
        return
    if dst_dir[: len(src_dir) + 1] == [*src_dir, name]:
        raise BadName("a folder cannot move into itself")
    entry = await entry_at(tree, src)
    await tree.change(dst_dir, lambda e: ops.put(e, new, entry, replace=False))
    await tree.change(src_dir, lambda e: ops.remove(e, name, tree.now()))


async def remove(tree: FileTree, path: str) -> None:
    parent, leaf = parent_of(path)
    await tree.change(parent, lambda e: ops.remove(e, leaf, tree.now()))


async def versions(tree: FileTree, path: str, limit: int) -> list[dict[str, Any]]:
    """The folder's versions, newest first (the first parent's line), at most `limit`."""
    level: Level | None = await folder(tree, path)
    rows: list[dict[str, Any]] = []
    while level is not None and level.oid and len(rows) < limit:
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
    return rows


async def restore(tree: FileTree, path: str, version: str) -> None:
    """The folder at `path` as it was in `version` (an object id from `versions`), as a new version."""
    names = split(path)
    current = await folder(tree, path)
    old = await tree.open_level(version)
    if current.oid and old.folder.folder != current.folder.folder:
        raise Malformed("that version is of another folder")
    await tree.change(names, lambda e: ops.restore(e, old.entries, tree.now()))


async def share(tree: FileTree, path: str, who: str, *, revoke: bool = False) -> Share | None:
    """`path` shared read-only with `who`: the share record to give them (None for a revoke). A folder
    lists `who` among its readers from its next version on (a revoke leaves them out); a file's
    share covers the version shared."""
    names = split(path)
    _, root = await tree.head()
    target = (await tree.walk(root, names[:-1]))[-1].entries.get(names[-1]) if names else None
    if target is not None and target.live and target.kind == "file":
        if revoke:
            raise Malformed("a file share covers the version shared: put a new version to leave it behind")
        return make_share(tree.key, who, names[-1], target, tree.now())
    chain = await tree.walk(root, names)
    readers = set(chain[-1].folder.readers) - {tree.owner} if chain[-1].oid else set()
    readers = readers - {who} if revoke else readers | {who}
    new_root = await tree.change(names, dict, readers)
    if revoke:
        return None
    level = (await tree.walk(new_root, names))[-1]
    return make_share(tree.key, who, names[-1] if names else "/", tree.folder_entry(level), tree.now())


async def shared(tree: FileTree, share: Share) -> Level | None:
    """The folder a share names, opened with this key (None: the share names a file)."""
    if share.to != tree.owner:
        raise NotForYou(f"this share is for {share.to[:16]}..., not for this key")
    if share.entry.kind != "folder":
        return None
    return await tree.open_level(share.entry.obj, owner=share.owner)


async def shared_entry(tree: FileTree, share: Share, path: str) -> Entry:
    """The file a share names, or the one at `path` inside the folder it names, with its key."""
    level = await shared(tree, share)
    if level is None:
        return share.file_entry(tree.key)
    names = split(path)
    if not names:
        raise NotFound("name the file inside the shared folder")
    chain = await tree.walk(level, names[:-1])
    return ops.get(chain[-1].entries, names[-1])
