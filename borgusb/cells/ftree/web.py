"""The Files page of the conduit: the person's folders through the file manager (the ftree cell's page hook).

The conduit holds the unlocked wallet, so this is where private files and folders are encrypted and
opened, with the very calls the CLI makes (`files.actions` on a `FileTree` at the ftree node that
answers); the cells see ciphertext and signed root pointers only. The page's script
(static/files.js) POSTs under ``/api/files/``: small JSON requests for a listing, a new folder, a
move, a delete, versions and restore, a share or revoke, what someone shared; an upload as a form
whose answer is a stream of JSON lines (the network's progress, then the result); a download as the
file's bytes. Transfers pass through a RAM directory. The last listing of each folder is kept per
key (bounded), so when no node answers the page still shows it, marked as not refreshed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web

from ...conduit.network import NoEndpoint
from ...conduit.web import (
    NETWORK,
    Handler,
    Refusal,
    add_page,
    add_script,
    guarded,
    json_fields,
    render,
    require_unlocked,
)
from ...dstream import StreamError
from ...files import actions
from ...files.entry import check_name
from ...files.errors import FilesError
from ...files.remote import FileTree, as_dict, split
from ...files.share import parse_share
from ...keys import is_public_key_hex
from ...net.peer import PeerError, PeerRejected

CELL = "ftreeFileMgrCell"
HERE = Path(__file__).parent
MAX_BODY = 16 * 1024  # a request names paths, a key, or holds a share record (at most 4 KiB)
MAX_UPLOAD = 2 << 30  # bytes of one upload (it passes through RAM)
TIMEOUT_S = 60.0  # a folder change reads and writes a few manifests on R holders
TRANSFER_TIMEOUT_S = 1800.0
MAX_VERSIONS = 50
LAST_PATHS, LAST_KEYS = 64, 8  # the listings kept for "not refreshed": per key, and keys
MACHINE = f"conduit on {socket.gethostname()}"[:64]
RAM_DIRS = ("/dev/shm", "/run")
T = TypeVar("T")
LAST = web.AppKey("ftree_last", OrderedDict[str, OrderedDict[str, dict[str, Any]]])

EXPLAIN = {
    "not_found": "There is no such file or folder (any more).",
    "exists": "That name is taken in this folder.",
    "bad_name": "That is not a name a file or folder can have.",
    "not_reader": "This key is not among the folder's readers (it was never shared with you, or was revoked).",
    "not_for_you": "This share record was made for another key.",
    "tampered": "What the network gave does not open under its key: it is damaged or not yours.",
    "bad_signature": "A record did not carry its owner's signature.",
    "conflict": "The folder kept changing meanwhile; try again.",
    "malformed": "The request, or what the network answered, is not what it should be.",
    "too_large": "That is too large.",
    "no_node": "No file manager node (ftreeFileMgrCell) answered right now.",
    "healing": "The network is healing (a storage node went missing): the file is not reachable yet; retry shortly.",
}
NEXT_STEP = (
    "Next: start a node ('borgusb cluster up' on this machine, or boot a stick) or give the conduit one with "
    "--node IP, then press Refresh."
)


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, EXPLAIN, (FilesError,))


def _ram() -> Path | None:
    """Where transfers pass through: RAM when there is some, so no plaintext reaches the host's disk."""
    return next((Path(d) for d in RAM_DIRS if os.path.isdir(d) and os.access(d, os.W_OK)), None)


async def _on_tree(request: web.Request, op: Callable[[FileTree], Awaitable[T]], timeout_s: float = TIMEOUT_S) -> T:
    """`op` on the person's tree through the first ftree node that answers (its shard cell beside it)."""
    state = require_unlocked(request)
    assert state.wallet is not None
    key, network = state.wallet.key, request.app[NETWORK]
    r = int(os.environ.get("BORGUSB_SHARD_R", "3"))

    async def run(peers: Any, ip: str) -> T:
        tree = FileTree(peers, ip, key, machine=MACHINE, r=r, tmp=_ram())
        try:
            return await op(tree)
        finally:
            tree.close()

    served = await network.use(CELL, run, key=key, timeout_s=timeout_s)
    result: T = served.result
    return result


def _path(form: dict[str, str], name: str = "path") -> str:
    names = split(form.get(name, ""))
    for n in names:
        check_name(n)
    return "/" + "/".join(names)


def _owner(request: web.Request) -> str:
    state = require_unlocked(request)
    assert state.wallet is not None
    return state.wallet.public.public_key_hex


def _remember(request: web.Request, doc: dict[str, Any]) -> None:
    keys = request.app[LAST]
    paths = keys.setdefault(_owner(request), OrderedDict())
    keys.move_to_end(_owner(request))
    paths[doc["path"]] = doc
    paths.move_to_end(doc["path"])
    while len(paths) > LAST_PATHS:
        paths.popitem(last=False)
    while len(keys) > LAST_KEYS:
        keys.popitem(last=False)


async def page(request: web.Request) -> web.Response:
    state = require_unlocked(request)
    assert state.wallet is not None
    return render(request, "files.html", public=state.wallet.public)


async def api_ls(request: web.Request) -> web.Response:
    path = _path(await json_fields(request, MAX_BODY, 4096))

    async def ls(tree: FileTree) -> dict[str, Any]:
        level = await actions.folder(tree, path)
        readers = sorted(set(level.folder.readers) - {tree.owner}) if level.oid else []
        return {
            "path": path,
            "entries": as_dict(level.entries),
            "public": level.folder.public if level.oid else False,
            "version": level.folder.version,
            "readers": readers,
            "node": tree.node,
        }

    try:
        doc = await _on_tree(request, ls)
    except (NoEndpoint, PeerError, StreamError) as exc:
        if isinstance(exc, PeerRejected) and (exc.status < 500 or exc.reason == "healing"):
            raise  # a refusal in words (`guarded` shows it), not silence
        kept = request.app[LAST].get(_owner(request))
        last = kept.get(path) if kept is not None else None
        error = f"No node answered, so this list was not refreshed ({exc}). {NEXT_STEP}"
        return web.json_response({"error": error, "reason": "no_node", "last": last}, status=503)
    doc["at"] = request.app[NETWORK].clock.now_ms()
    _remember(request, doc)
    return web.json_response(doc)


async def api_mkdir(request: web.Request) -> web.Response:
    form = await json_fields(request, MAX_BODY, 4096)
    path, public = _path(form), form.get("public") == "1"
    actions.parent_of(path)
    await _on_tree(request, lambda tree: actions.mkdir(tree, path, public=public))
    return web.json_response({"path": path, "public": public})


async def api_mv(request: web.Request) -> web.Response:
    form = await json_fields(request, MAX_BODY, 4096)
    src, dst = _path(form, "src"), _path(form, "dst")
    actions.parent_of(src), actions.parent_of(dst)
    await _on_tree(request, lambda tree: actions.move(tree, src, dst))
    return web.json_response({"src": src, "dst": dst})


async def api_rm(request: web.Request) -> web.Response:
    path = _path(await json_fields(request, MAX_BODY, 4096))
    actions.parent_of(path)
    await _on_tree(request, lambda tree: actions.remove(tree, path))
    return web.json_response({"removed": path})


async def api_versions(request: web.Request) -> web.Response:
    path = _path(await json_fields(request, MAX_BODY, 4096))
    rows = await _on_tree(request, lambda tree: actions.versions(tree, path, MAX_VERSIONS))
    return web.json_response({"path": path, "versions": rows})


async def api_restore(request: web.Request) -> web.Response:
    form = await json_fields(request, MAX_BODY, 4096)
    path, version = _path(form), form.get("version", "")
    if len(version) != 64:
        raise Refusal("malformed", "a version is an object id from the list of versions")
    await _on_tree(request, lambda tree: actions.restore(tree, path, version))
    return web.json_response({"path": path, "restored": version})


async def api_share(request: web.Request) -> web.Response:
    form = await json_fields(request, MAX_BODY, 4096)
    path, who, revoke = _path(form), form.get("to", "").strip().lower(), form.get("revoke") == "1"
    if not is_public_key_hex(who):
        raise Refusal("malformed", "share with a public key: 66 hex digits, starting 02 or 03")
    share = await _on_tree(request, lambda tree: actions.share(tree, path, who, revoke=revoke))
    return web.json_response({"path": path, "to": who, "share": share.encode().decode() if share else None})


def _share_of(form: dict[str, str]) -> Any:
    return parse_share(form.get("share", "").strip().encode())


async def api_shared(request: web.Request) -> web.Response:
    """What a share record someone gave this key names: the file, or the folder's entries at `path`."""
    form = await json_fields(request, MAX_BODY)
    share, names = _share_of(form), split(_path(form))

    async def ls(tree: FileTree) -> dict[str, Any]:
        level = await actions.shared(tree, share)
        if level is None:
            return {"entries": as_dict({share.name: share.entry})}
        return {"entries": as_dict((await tree.walk(level, names))[-1].entries)}

    doc = await _on_tree(request, ls)
    return web.json_response({**doc, "owner": share.owner, "name": share.name, "kind": share.entry.kind})


async def api_download(request: web.Request) -> web.StreamResponse:
    """The file's bytes (decrypted here when private), from the person's tree or through a share."""
    form = await json_fields(request, MAX_BODY)
    path = _path(form)
    share = _share_of(form) if form.get("share") else None
    workdir = Path(tempfile.mkdtemp(prefix="borgusb-conduit-", dir=_ram()))
    out = workdir / "download"

    async def get(tree: FileTree) -> int:
        entry = await (actions.shared_entry(tree, share, path) if share else actions.entry_at(tree, path))
        await actions.get(tree, entry, out)
        return entry.size

    try:
        await _on_tree(request, get, TRANSFER_TIMEOUT_S)
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(out.stat().st_size),
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        with open(out, "rb") as f:
            while chunk := f.read(1 << 20):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _receive(request: web.Request, workdir: Path) -> tuple[Path, str]:
    """The uploaded file, written to `workdir` (at most MAX_UPLOAD bytes), and its name."""
    reader = await request.multipart()
    part = await reader.next()
    if not isinstance(part, BodyPartReader) or part.name != "file":
        raise Refusal("malformed", "choose a file to upload")
    # the page names the file in the query, exactly: in the form a browser writes '"' as %22 (HTML's
    # multipart rule), which cannot be told from a name holding "%22"; and a browser may send another
    # Unicode form (macOS: NFD), while names are NFC (`check_name`)
    given = request.query.get("name") or os.path.basename(part.filename or "") or "file"
    name = check_name(unicodedata.normalize("NFC", given[:255]))
    local, size = workdir / "upload", 0
    with open(local, "wb") as out:
        while chunk := await part.read_chunk(1 << 20):
            size += len(chunk)
            if size > MAX_UPLOAD:
                raise Refusal("too_large", f"an upload is at most {MAX_UPLOAD >> 30} GiB")
            out.write(chunk)
    return local, name


def _failure(exc: Exception) -> dict[str, str]:
    """An error met after the answer started, as its last line: the reason word and a sentence."""
    reason = getattr(exc, "reason", None) or ("no_node" if isinstance(exc, NoEndpoint) else "failed")
    detail = getattr(exc, "detail", None) or str(exc)
    return {"error": f"{EXPLAIN.get(reason, 'The upload failed.')} ({reason}): {detail}", "reason": reason}


async def api_upload(request: web.Request) -> web.StreamResponse:
    """A file into the folder ``?path=`` as ``?name=`` (private unless ``?public=1``). The answer is JSON lines:
    ``{"done": n, "total": t}`` while the network stores it, then the result or ``{"error", "reason"}``."""
    path, public = _path(dict(request.query)), request.query.get("public") == "1"
    _owner(request)
    workdir = Path(tempfile.mkdtemp(prefix="borgusb-conduit-", dir=_ram()))
    try:
        local, name = await _receive(request, workdir)
        seen: list[int] = [0, local.stat().st_size]

        def progress(done: int, total: int) -> None:
            seen[:] = [done, total]

        task = asyncio.ensure_future(
            _on_tree(
                request,
                lambda tree: actions.put(tree, local, path, public=public, name=name, progress=progress),
                TRANSFER_TIMEOUT_S,
            )
        )
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
        await response.prepare(request)

        async def line(doc: dict[str, Any]) -> None:
            await response.write(json.dumps(doc).encode() + b"\n")

        try:
            while not task.done():
                await asyncio.wait({task}, timeout=0.25)
                await line({"done": seen[0], "total": seen[1]})
            stored, oid = task.result()
            await line({"path": stored, "obj": oid, "name": name, "size": local.stat().st_size, "public": public})
        except (FilesError, NoEndpoint, PeerError, StreamError, OSError) as exc:
            await line(_failure(exc))
        finally:
            task.cancel()
        await response.write_eof()
        return response
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def setup(app: web.Application) -> None:
    """The page hook: the conduit calls this once (SPEC.web)."""
    add_page(app, "/files", "Files", "files", HERE / "templates")
    add_script(app, "files.js", HERE / "static" / "files.js")
    app[LAST] = OrderedDict()
    app.router.add_get("/files", page)
    for name, handler in (
        ("ls", api_ls),
        ("mkdir", api_mkdir),
        ("mv", api_mv),
        ("rm", api_rm),
        ("versions", api_versions),
        ("restore", api_restore),
        ("share", api_share),
        ("shared", api_shared),
        ("download", api_download),
        ("upload", api_upload),
    ):
        app.router.add_post(f"/api/files/{name}", _guarded(handler))
