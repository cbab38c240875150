"""The file manager's client: the core's decisions carried out over the network, where the wallet
is unlocked (the CLI, the conduit's Files page: `actions` is what they do with it). Cells see only
what this module sends them: ciphertext of private files and folders (stored as shard objects,
`dstream`), and signed root pointers (`cells.ftree`).

A change is made from the current root: the folders on the path are read, the edited folder and
each folder above it get a new version, and a root pointer one higher is published. When the
holders already keep a newer pointer (another machine of the person wrote meanwhile) the two
root versions are merged (`merge`, sub-folders in turn) from the version this change started
from, and the merge is published instead: no change is lost.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cells.ftree.client import FtreeClient
from ..cells.shard.client import READ_WAIT_S, locate_through_heal
from ..dna import get as dna_get
from ..keys import SigningKey
from ..net.peer import PeerClient
from . import stream
from .entry import Entry
from .errors import FilesError, Malformed, NotFound, Tampered
from .keyring import folder_key, readers_for
from .manifest import MAX_MANIFEST_BYTES, Folder, make_folder, open_entries, parse_folder
from .merge import Side, merge
from .root import RootPointer, check_root, make_root

SHARD_PORT = dna_get("shardTreeCell").recp_port
MAX_RETRIES = 8
READ_BLOCK = 256 * 1024  # stays in the CPU cache between read, AES and write: 2x faster than 1 MiB here
Progress = Callable[[int, int], None] | None
Edit = Callable[[dict[str, Entry]], dict[str, Entry]]


class Conflict(FilesError):
    reason = "conflict"


@dataclass(frozen=True, slots=True)
class Level:
    """One folder version as read: its object id, manifest, version key (None: public), entries."""

    oid: str
    folder: Folder
    key: bytes | None
    entries: dict[str, Entry]


def split(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def encrypt_file(key: bytes, src: Path, dst: Path) -> int:
    """`src` encrypted to `dst` a block at a time (bounded memory); the plaintext size."""
    enc, size = stream.Encryptor(key), 0
    with open(src, "rb") as f, open(dst, "wb") as out:
        while block := f.read(READ_BLOCK):
            size += len(block)
            out.write(enc.update(block))
        out.write(enc.finalize())
    return size


def decrypt_in_place(key: bytes, path: Path, dst: Path) -> None:
    """The ciphertext at `path` decrypted over itself and renamed to `dst` once every chunk checked
    (removed when one fails, so no prefix of a file that did not check is left behind). Chunk i's
    plaintext is written at i * CHUNK, never past the ciphertext already read, so no second copy
    of the file is written: on a 30 MiB file that second file's fresh pages cost more than the AES."""
    chunk, sealed = stream.CHUNK, stream.CHUNK + stream.TAG
    per = max(1, READ_BLOCK // chunk)
    inb, outb = memoryview(bytearray(per * sealed)), memoryview(bytearray(per * chunk))
    try:
        with open(path, "r+b", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            opener, index = stream.ChunkOpener(key, size), 0
            while index < opener.count:
                k, start = min(per, opener.count - index), index * sealed
                want = min(k * sealed, size - start)
                if os.preadv(f.fileno(), [inb[:want]], start) != want:
                    raise Tampered("the ciphertext changed while it was read")
                pos = done = 0
                for j in range(k):
                    n = min(sealed, want - pos)
                    opener.open_into(index + j, inb[pos : pos + n], outb[done : done + n - stream.TAG])
                    pos, done = pos + n, done + n - stream.TAG
                at, view = index * chunk, outb[:done]
                while view:
                    wrote = os.pwrite(f.fileno(), view, at)
                    at, view = at + wrote, view[wrote:]
                index += k
            f.truncate(opener.size)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    os.replace(path, dst)


class FileTree:
    """A person's tree, through the node at `node` (its shardTreeCell and ftreeFileMgrCell)."""

    def __init__(
        self, peers: PeerClient, node: str, key: SigningKey, *, machine: str, r: int = 3, tmp: Path | None = None
    ) -> None:
        self.peers, self.node, self.key, self.machine, self.r = peers, node, key, machine, r
        self.owner = key.public_key_hex
        self.ftree = FtreeClient(peers, node)
        # where transfers pass through (the conduit gives a RAM directory); removed by `close`
        self.tmp = Path(tempfile.mkdtemp(prefix="borgusb-files-", dir=tmp))

    def close(self) -> None:
        for p in self.tmp.iterdir():
            p.unlink(missing_ok=True)
        self.tmp.rmdir()

    def now(self) -> int:
        return int(self.peers.clock.now_ms())

    # -------------------------------------------------------------- objects

    async def put_path(self, path: Path, progress: Progress = None) -> str:
        from ..dstream import put_file

        out = await put_file(self.peers, self.node, SHARD_PORT, path, self.key, r=self.r, progress=progress)
        return str(out["id"])

    async def get_path(self, oid: str, out: Path, progress: Progress = None) -> None:
        from ..dstream import Receiver, parse_locate

        reply = await locate_through_heal(self.peers, self.node, SHARD_PORT, oid, wait_s=READ_WAIT_S)
        m, holders = parse_locate(reply, oid)
        receiver = Receiver(self.peers, m, holders, out, progress=progress)
        await receiver.run()
        await receiver.receipts_handed()  # a CLI ends right after: the holders' serve reward

    async def put_bytes(self, data: bytes) -> str:
        path = self.tmp / f"up-{os.urandom(8).hex()}"
        path.write_bytes(data)
        try:
            return await self.put_path(path)
        finally:
            path.unlink(missing_ok=True)

    async def get_bytes(self, oid: str, limit: int) -> bytes:
        path = self.tmp / f"down-{os.urandom(8).hex()}"
        try:
            await self.get_path(oid, path)
            if path.stat().st_size > limit:
                raise Malformed(f"object {oid[:16]} is larger than {limit} bytes")
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)

    # -------------------------------------------------------------- folders

    async def open_level(self, oid: str, key: bytes | None = None, *, owner: str | None = None) -> Level:
        """The folder version stored as `oid`, checked to be signed by `owner` (default: this tree's),
        opened with `key` (from its parent's entry) or else with its version key wrapped to this key."""
        folder = parse_folder(await self.get_bytes(oid, MAX_MANIFEST_BYTES))
        if folder.owner != (owner or self.owner):
            raise Malformed("a folder signed by another key than its owner's")
        if key is None:
            key = folder_key(self.key, folder)
        return Level(oid, folder, key, open_entries(folder, key))

    async def write_level(
        self,
        base: Level | None,
        entries: dict[str, Entry],
        *,
        public: bool,
        parents: tuple[str, ...],
        version: int | None = None,
        readers: set[str] | None = None,
    ) -> Level:
        """A new folder version (fresh key when private), stored; readers carried over from `base`."""
        if readers is None:
            readers = set(base.folder.readers) - {self.owner} if base is not None else set()
        fid = base.folder.folder if base is not None else os.urandom(32).hex()
        key = None if public else stream.new_key()
        folder = make_folder(
            self.key,
            folder=fid,
            version=version or ((base.folder.version + 1) if base is not None else 1),
            parents=parents,
            ts=self.now(),
            machine=self.machine,
            entries=entries,
            content_key=key,
            readers={} if key is None else readers_for(self.owner, readers, key, fid),
        )
        oid = await self.put_bytes(folder.encode())
        return Level(oid, folder, key, dict(entries))

    def folder_entry(self, level: Level) -> Entry:
        return Entry("folder", level.oid, 0, "", level.folder.ts, level.key.hex() if level.key else "")

    async def head(self) -> tuple[RootPointer | None, Level]:
        """The current root pointer and root folder (an empty private one before the first change)."""
        ptr = await self.ftree.find_root(self.owner)
        if ptr is None:
            return None, Level("", _EMPTY_ROOT, None, {})
        if ptr.owner != self.owner:
            raise Malformed("a root pointer of another owner")
        return ptr, await self.open_level(ptr.root)

    async def walk(self, root: Level, names: list[str]) -> list[Level]:
        """The folders from `root` down the path `names` (every one must be a folder)."""
        chain = [root]
        for name in names:
            e = chain[-1].entries.get(name)
            if e is None or not e.live:
                raise NotFound(f"no folder {name!r}")
            if e.kind != "folder":
                raise Malformed(f"{name!r} is a file, not a folder")
            chain.append(await self.open_level(e.obj, _key(e), owner=root.folder.owner))
        return chain

    async def _rewrite(
        self, chain: list[Level], names: list[str], leaf: dict[str, Entry], readers: set[str] | None = None
    ) -> Level:
        """New versions of the chain's folders, bottom up, with `leaf` as the last one's entries."""
        entries, below = leaf, None
        for depth in range(len(chain) - 1, -1, -1):
            old = chain[depth]
            if below is not None:
                entries = dict(old.entries)
                entries[names[depth]] = self.folder_entry(below)
            fresh = not old.oid
            below = await self.write_level(
                None if fresh else old,
                entries,
                public=old.folder.public and not fresh,
                parents=() if fresh else (old.oid,),
                readers=readers if depth == len(chain) - 1 else None,
            )
        assert below is not None
        return below

    async def change(self, path: list[str], edit: Edit, readers: set[str] | None = None) -> Level:
        """Apply `edit` to the folder at `path` (and give it these `readers` besides the owner, when
        not None) and publish; merged with a concurrent change if any. The root as published."""
        ptr, root = await self.head()
        chain = await self.walk(root, path)
        new_root = await self._rewrite(chain, path, edit(dict(chain[-1].entries)), readers)
        for _ in range(MAX_RETRIES):
            seq = (ptr.seq if ptr else 0) + 1
            reply = await self.ftree.publish_root(
                make_root(self.key, seq=seq, folder=new_root.folder.folder, root=new_root.oid, ts=self.now())
            )
            if reply.get("kept", 0) >= reply.get("quorum", 1):
                return new_root
            if reply.get("newest") is None:
                raise Conflict(f"too few holders kept the new root pointer: {reply.get('refused')}")
            ptr = check_root(reply["newest"])
            if ptr.owner != self.owner:
                raise Malformed("a cell answered with another owner's root pointer")
            await asyncio.sleep(random.random() * 0.2)  # two machines retrying in step would tie again
            theirs = await self.open_level(ptr.root)
            new_root = await self.merge_levels(root if root.oid else None, new_root, theirs)
            root = theirs
        raise Conflict("the root kept changing while this change was merged")

    async def merge_levels(self, base: Level | None, ours: Level, theirs: Level) -> Level:
        """`ours` and `theirs`, made concurrently from `base`, merged (sub-folders in turn) and stored."""

        def side(lv: Level) -> Side:
            when = time.strftime("%Y-%m-%d %H.%M.%S", time.gmtime(lv.folder.ts / 1000))
            return Side(lv.entries, f"{lv.folder.machine} {when}", (lv.folder.ts, lv.folder.id))

        result = merge(base.entries if base else {}, side(ours), side(theirs))
        entries = dict(result.entries)
        for name in result.folders:
            b = base.entries.get(name) if base else None
            o, t = ours.entries[name], theirs.entries[name]
            sub_base = await self.open_level(b.obj, _key(b)) if b is not None and b.kind == "folder" else None
            merged = await self.merge_levels(
                sub_base, await self.open_level(o.obj, _key(o)), await self.open_level(t.obj, _key(t))
            )
            entries[name] = self.folder_entry(merged)
        b_readers, o_readers, t_readers = (set(lv.folder.readers) if lv else set() for lv in (base, ours, theirs))
        added = (o_readers - b_readers) | (t_readers - b_readers)  # a share on either side holds,
        removed = (b_readers - o_readers) | (b_readers - t_readers)  # and so does a revoke
        return await self.write_level(
            ours,
            entries,
            public=ours.folder.public,
            parents=(ours.oid, theirs.oid),
            version=max(ours.folder.version, theirs.folder.version) + 1,
            readers=((b_readers | added) - removed) - {self.owner},
        )


def _key(e: Entry) -> bytes | None:
    return bytes.fromhex(e.key) if e.key else None


# what `head` stands on before a person's first change: no object (oid ""), no entries; `_rewrite`
# then makes the first root version, a private one with a new folder id
_EMPTY_ROOT = Folder("", "", 0, (), 0, "", False, {}, "", {}, "", "")


def as_dict(entries: dict[str, Entry]) -> list[dict[str, Any]]:
    """A listing for people and --json: live entries, folders first, names sorted."""
    rows = [
        dict(name=n, kind=e.kind, size=e.size, type=e.type, mtime=e.mtime, private=e.private, obj=e.obj)
        for n, e in entries.items()
        if e.live
    ]
    return sorted(rows, key=lambda r: (r["kind"] != "folder", r["name"]))
