"""The Watch page of the conduit: a person's media files, played through fStream (the fStream cell's page hook).

The page lists a folder's audio and video files (the file manager's, through the ftree cell, as the
Files page reads them), others' public media (the owner-signed listings the fStream cells keep,
`borgusb.fstream.listing`, each signature checked here), and what someone shared with this key (a
pasted share record of the file manager: a file, or a folder's media), and plays one in a
``<video>`` element. A media element cannot send the
conduit's secret header, so ``POST /api/watch/open`` (with the secret) gives it an address that
holds a capability instead: ``/media/<token>``, 256 random bits, for this file, this wallet key and
`TOKEN_S` seconds, at most `MAX_TOKENS` kept; once the wallet is locked they are all dropped.

``GET /media/<token>`` answers HTTP ranges (`borgusb.fstream.ranges`) from the object's bytes at an
fStream endpoint (``/object/<id>`` on its monPort, which follows the cell's redirects when it is
full). A private file's chunks are fetched as ciphertext and opened here (`fstream.sealed`): the
fStream cell never sees plaintext or the key. When an endpoint fails mid-response the rest comes
from the next one, from the byte where the first stopped, so the player never notices.

Each request to an endpoint carries the wallet's viewer header (`borgusb.fstream.viewer`): the
endpoint charges the bytes to this wallet (the ``stream`` price, free up to a daily share). An
endpoint that wants a payment first (402) is passed over for the next; when every one does, the
player gets 402 ``payment_required`` and the page says how to pay ahead (``borgusb pay credit
--for stream``).

**Read receipts** (the ``content`` reward, docs/ledger.md): the first time in a (UTC) day the relay
sends a public listing's bytes to this wallet, it signs a read receipt of that map for the map's
owner (`ledger.contentwork.sign_read`) and hands it to the fStream cell that served them
(``fstream.read``), in the background: once per (wallet, map, day) (`MAX_READS_SENT` remembered; a
failure other than a refusal is tried again at the next range), a failure logged and counted, never
in the way of the stream. Not for the wallet's own media.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ...conduit.web import NETWORK, STATE, add_page, add_script, guarded, json_fields, render, require_unlocked
from ...dna import get as dna_row
from ...files import actions
from ...files.entry import check_name
from ...files.errors import FilesError
from ...files.remote import FileTree, as_dict, split
from ...files.share import parse_share
from ...files.stream import encrypted_size
from ...fstream import ranges, viewer
from ...fstream.listing import BadListing, Listing, check_listing
from ...fstream.sealed import RangeOpener
from ...fstream.streammap import MAX_MAP_BYTES, BadMap, Rendition, StreamMap, parse_map
from ...ledger.contentwork import day_of, sign_read
from ...ledger.rules import GIB
from ...net.peer import PeerError, PeerRejected
from ..peerpays import creditweb
from . import earnweb
from .client import FStreamClient

log = logging.getLogger("borgusb.fstream.web")

HERE = Path(__file__).parent
FTREE, FSTREAM = "ftreeFileMgrCell", "fStreamCell"
MAX_BODY = 16 * 1024
MAX_CATALOG = 256 * 1024  # bytes of one endpoint's /catalog read (100 listings of ~600 bytes)
CATALOG_ENDPOINTS = 3  # fStream endpoints asked for listings (each keeps them all; several: one may lag)
MAX_LISTED = 512  # checked listings kept to open by their map id
TOKEN_S = 6 * 3600  # how long a player's address works
MAX_TOKENS = 64
MACHINE = "conduit watch page"
MAX_READS_SENT = 4096  # (wallet, map, day) whose read receipt was handed in
READ_TIMEOUT_S = 30.0
CLOSE_WAIT_S = 2.0  # how long the page's cleanup waits for cancelled read receipt hand-ins to end
READ = 256 * 1024  # ciphertext read from an endpoint at a time
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=3, sock_read=20)
EXPLAIN = {
    "not_media": "That file is not audio or video.",
    "not_found": "There is no such file (any more).",
    "bad_name": "That is not a name a file can have.",
    "no_node": "No file manager node (ftreeFileMgrCell) answered right now.",
    "not_listed": "That media is not among the public listings any more; list them again.",
    "not_for_you": "This share record was made for another key.",
}


def streaming_left(usage: dict[str, Any]) -> str:
    """The free streaming left today, as the Streaming card says it: "3.25 GiB of 4.00 GiB"."""
    left, free = creditweb.free_today(usage)[::-1]
    return f"{left / GIB:.2f} GiB of {free / GIB:.2f} GiB free streaming left today"


SELLER = creditweb.Seller("stream", FSTREAM, FStreamClient, "fStream cell", streaming_left)


@dataclass(frozen=True)
class Watch:
    """One opened media file: what its player's address may read."""

    owner: str
    obj: str
    size: int  # the plaintext's bytes
    key: bytes | None  # the file key of a private file
    type: str
    until: float
    map: str = ""  # a public listing's map (its reads earn its owner the content reward), else ""
    map_owner: str = ""


TOKENS = web.AppKey("watch_tokens", OrderedDict[str, Watch])
HTTP = web.AppKey("watch_http", list[aiohttp.ClientSession])
COUNTERS = web.AppKey("watch_counters", Counter[str])
LISTED = web.AppKey("watch_listed", OrderedDict[str, Listing])
READS_SENT = web.AppKey("watch_reads_sent", OrderedDict[tuple[str, str, int], None])
READ_TASKS = web.AppKey("watch_read_tasks", set[asyncio.Task[None]])


def setup(app: web.Application) -> None:
    add_page(app, "/watch", "Watch", "watch", HERE / "templates")
    add_script(app, "watch.js", HERE / "static" / "watch.js")
    app[TOKENS] = OrderedDict()
    app[HTTP] = []
    app[COUNTERS] = Counter()
    app[LISTED] = OrderedDict()
    app[READS_SENT] = OrderedDict()
    app[READ_TASKS] = set()
    app.router.add_get("/watch", page)
    app.router.add_post("/api/watch/ls", guarded(api_ls, EXPLAIN, (FilesError,)))
    app.router.add_post("/api/watch/open", guarded(api_open, EXPLAIN, (FilesError,)))
    app.router.add_post("/api/watch/public", guarded(api_public, EXPLAIN, (FilesError,)))
    app.router.add_post("/api/watch/shared", guarded(api_shared, EXPLAIN, (FilesError,)))
    app.router.add_get("/media/{token}", media)
    creditweb.setup(app, SELLER, "/api/watch")
    earnweb.setup(app)
    app.on_cleanup.append(_close)


async def _close(app: web.Application) -> None:
    """Cancel the read receipts still on their way and wait for them to end, so none is left pending.

    `asyncio.wait`, not a gather under a timeout: a gather waits for a task that holds off its
    cancellation even once the timeout cancels the gather, so only `wait` bounds the wait."""
    tasks: set[asyncio.Task[None]] = app[READ_TASKS]
    for task in tasks:
        task.cancel()
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=CLOSE_WAIT_S)
        if pending:
            log.warning("%d read receipt hand-ins did not end in %.0f s of being cancelled", len(pending), CLOSE_WAIT_S)
    for session in app[HTTP]:
        await session.close()


def _is_media(kind: str) -> bool:
    return kind.startswith(("video/", "audio/"))


async def page(request: web.Request) -> web.Response:
    state = require_unlocked(request)
    assert state.wallet is not None
    return render(request, "watch.html", public=state.wallet.public)


def _path(form: dict[str, str]) -> str:
    names = split(form.get("path", ""))
    for n in names:
        check_name(n)
    return "/" + "/".join(names)


async def _on_tree(request: web.Request, op: Any) -> Any:
    state = require_unlocked(request)
    assert state.wallet is not None
    key = state.wallet.key

    async def run(peers: Any, ip: str) -> Any:
        tree = FileTree(peers, ip, key, machine=MACHINE)  # reads only: nothing is signed as this machine
        try:
            return await op(tree)
        finally:
            tree.close()

    return (await request.app[NETWORK].use(FTREE, run, key=key, timeout_s=60.0)).result


async def api_ls(request: web.Request) -> web.Response:
    """A folder's subfolders and media files."""
    path = _path(await json_fields(request, MAX_BODY, 4096))
    level = await _on_tree(request, lambda tree: actions.folder(tree, path))
    rows = [r for r in as_dict(level.entries) if r["kind"] == "folder" or _is_media(r["type"])]
    return web.json_response(
        {"path": path, "entries": [{k: r[k] for k in ("name", "kind", "size", "type", "private")} for r in rows]}
    )


async def api_public(request: web.Request) -> web.Response:
    """The newest public listings of the fStream endpoints, each checked against its owner's
    signature here (an endpoint's word counts for nothing); one that does not check is counted."""
    require_unlocked(request)
    found: dict[str, Listing] = {}
    for ip in (await _endpoints(request))[:CATALOG_ENDPOINTS]:
        try:
            docs = await _catalog(request, ip)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            request.app[COUNTERS][f"catalog_failed:{exc.__class__.__name__}"] += 1
            continue
        for doc in docs:
            try:
                listing = check_listing(doc)
            except BadListing as exc:
                request.app[COUNTERS][f"listing_refused:{exc.reason}"] += 1
                continue
            if listing.map not in found or found[listing.map].t < listing.t:
                found[listing.map] = listing
    listed = request.app[LISTED]
    rows = sorted(found.values(), key=lambda x: -x.t)[:100]
    for x in rows:
        listed.pop(x.map, None)
        listed[x.map] = x
    while len(listed) > MAX_LISTED:
        listed.popitem(last=False)
    keys = ("map", "name", "type", "size", "owner", "t")
    return web.json_response({"listings": [{k: getattr(x, k) for k in keys} for x in rows]})


async def _catalog(request: web.Request, ip: str) -> list[Any]:
    url = f"http://{ip}:{dna_row(FSTREAM).mon_port}/catalog"
    async with _session(request).get(url) as resp:
        if resp.status != 200:
            raise ValueError(f"{ip} answered {resp.status}")
        body = await resp.content.read(MAX_CATALOG + 1)
    doc = json.loads(body) if len(body) <= MAX_CATALOG else None
    if not isinstance(doc, dict) or not isinstance(doc.get("listings"), list):
        raise ValueError(f"{ip} sent no catalog")
    return list(doc["listings"])[:100]


async def api_shared(request: web.Request) -> web.Response:
    """What a pasted share record gives this key: the file, or the media of the folder it names."""
    form = await json_fields(request, MAX_BODY, 8192)
    share = parse_share(form.get("share", "").strip().encode())
    level = await _on_tree(request, lambda tree: actions.shared(tree, share))
    entries = {share.name: share.entry} if level is None else level.entries
    rows = [r for r in as_dict(entries) if r["kind"] == "file" and _is_media(r["type"])]
    return web.json_response(
        {
            "owner": share.owner,
            "folder": level is not None,
            "entries": [{k: r[k] for k in ("name", "size", "type", "private")} for r in rows],
        }
    )


async def api_open(request: web.Request) -> web.Response:
    """A player's address for a media file: `path` in the person's tree, `map` of a public listing, or
    `path` inside what the pasted `share` record names."""
    form = await json_fields(request, MAX_BODY, 8192)
    if form.get("map"):
        listing = request.app[LISTED].get(form["map"])
        if listing is None:
            return web.json_response({"error": EXPLAIN["not_listed"], "reason": "not_listed"}, status=404)
        smap = await _stream_map(request, listing)
        top = Rendition(listing.map, listing.id, listing.size, listing.type, smap.bps, smap.height) if smap else None
        read = (listing.map, listing.owner)  # every rendition is a read of the listed map
        rungs = [
            {"src": _token(request, r.id, r.size, None, r.type, read), "type": r.type, "bps": r.bps, "h": r.h}
            for r in ([top, *smap.alts] if smap and top else [])
        ]
        if len(rungs) < 2:  # one rendition (or its map unreadable here): play the listed object
            return _opened(request, listing.id, listing.size, None, listing.type, listing.name, read)
        return web.json_response({**rungs[0], "name": listing.name, "renditions": rungs})
    if form.get("share"):
        share = parse_share(form["share"].strip().encode())
        inside = form.get("path", "")
        entry = await _on_tree(request, lambda tree: actions.shared_entry(tree, share, inside))
        path = "/" + "/".join([share.name, *split(inside)])
    else:
        path = _path(form)
        entry = await _on_tree(request, lambda tree: actions.entry_at(tree, path))
    kind = entry.type if _is_media(entry.type) else (mimetypes.guess_type(path)[0] or "")
    if entry.kind != "file" or not _is_media(kind):
        return web.json_response({"error": EXPLAIN["not_media"], "reason": "not_media"}, status=400)
    key = bytes.fromhex(entry.key) if entry.private else None
    return _opened(request, entry.obj, entry.size, key, kind, split(path)[-1])


def _opened(
    request: web.Request, obj: str, size: int, key: bytes | None, kind: str, name: str, read: tuple[str, str] = ("", "")
) -> web.Response:
    return web.json_response({"src": _token(request, obj, size, key, kind, read), "type": kind, "name": name})


def _token(
    request: web.Request, obj: str, size: int, key: bytes | None, kind: str, read: tuple[str, str] = ("", "")
) -> str:
    """A player's address for one object (see the module's docstring); `read`: the (map, owner) of a
    public listing it plays, whose read receipt the relay hands in."""
    state = require_unlocked(request)
    assert state.wallet is not None
    tokens = request.app[TOKENS]
    token = secrets.token_urlsafe(32)
    until = time.monotonic() + TOKEN_S
    tokens[token] = Watch(state.wallet.public.public_key_hex, obj, size, key, kind, until, read[0], read[1])
    while len(tokens) > MAX_TOKENS:
        tokens.popitem(last=False)
    return f"/media/{token}"


async def _stream_map(request: web.Request, listing: Listing) -> StreamMap | None:
    """The listed media's stream map, checked here (its owner's signature, the listed media), for the
    renditions it names; None (counted) when no endpoint gives one that checks."""
    url_path = f"/object/{listing.map}"
    for ip in (await _endpoints(request))[:2]:
        try:
            async with _session(request).get(f"http://{ip}:{dna_row(FSTREAM).mon_port}{url_path}") as resp:
                if resp.status != 200 or (resp.content_length or 0) > MAX_MAP_BYTES:
                    continue
                data = await resp.content.read(MAX_MAP_BYTES + 1)
            smap = parse_map(data)
        except (aiohttp.ClientError, TimeoutError, BadMap):
            continue
        if (smap.owner, smap.id) == (listing.owner, listing.id):
            return smap
    request.app[COUNTERS]["map_unread"] += 1
    return None


def _refuse(request: web.Request, reason: str, status: int) -> web.Response:
    request.app[COUNTERS][f"refused:{reason}"] += 1
    return web.json_response({"error": reason}, status=status, headers={"Cache-Control": "no-store"})


async def media(request: web.Request) -> web.StreamResponse:
    """A player's range request (see the module's docstring)."""
    state = request.app[STATE]
    w = request.app[TOKENS].get(request.match_info["token"])
    if w is None or time.monotonic() > w.until:
        return _refuse(request, "unknown_token", 404)
    if state.wallet is None or state.wallet.public.public_key_hex != w.owner:
        request.app[TOKENS].clear()  # locked (or another wallet): no key may stay reachable
        return _refuse(request, "locked", 403)
    answer = ranges.answer(request.headers.get("Range"), w.size)
    headers = {"Accept-Ranges": "bytes", "Content-Type": w.type, "X-Content-Type-Options": "nosniff"}
    headers["Cache-Control"] = "no-store"
    if isinstance(answer, ranges.Unsatisfiable):
        return web.Response(status=416, headers=dict(headers, **{"Content-Range": answer.content_range}))
    if w.size == 0:
        return web.Response(status=200, headers=headers)
    first, last = (answer.first, answer.last) if isinstance(answer, ranges.Part) else (0, w.size - 1)
    opener = RangeOpener(w.key, encrypted_size(w.size), first, last) if w.key is not None else None
    c_first, c_last = (opener.cipher_first, opener.cipher_last) if opener else (first, last)
    response = web.StreamResponse(status=206 if isinstance(answer, ranges.Part) else 200, headers=headers)
    if isinstance(answer, ranges.Part):
        response.headers["Content-Range"] = answer.content_range
    response.content_length = last - first + 1
    fed, unpaid = 0, False
    for ip in await _endpoints(request):
        try:
            got = await _relay(request, response, ip, w.obj, c_first + fed, c_last, opener)
            fed += got
            if got:
                _read_once(request, w, ip)
        except Unpaid:
            unpaid = True  # this endpoint's free bytes are spent and nothing is paid there: ask the next
            continue
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            request.app[COUNTERS][f"endpoint_lost:{exc.__class__.__name__}"] += 1
            continue
        except FilesError as exc:  # the bytes do not open under the file's key
            if not response.prepared:
                return _refuse(request, exc.reason, 502)
            raise ConnectionResetError(exc.reason) from None
        if c_first + fed > c_last:
            await response.write_eof()
            return response
    if not response.prepared:
        return _refuse(request, "payment_required", 402) if unpaid else _refuse(request, "no_endpoint", 502)
    raise ConnectionResetError("every fStream endpoint failed mid-response")  # the player asks again


def _read_once(request: web.Request, w: Watch, ip: str) -> None:
    """Hand the fStream cell at `ip` this wallet's read receipt of `w`'s public map, the first time
    today (see the module's docstring); in the background."""
    state = request.app[STATE]
    if not w.map or state.wallet is None or w.map_owner == w.owner:
        return
    network = request.app[NETWORK]
    now = network.clock.now_ms()
    sent, slot = request.app[READS_SENT], (w.owner, w.map, day_of(now))
    if slot in sent:
        return
    sent[slot] = None
    while len(sent) > MAX_READS_SENT:
        sent.popitem(last=False)
    key, counters = state.wallet.key, request.app[COUNTERS]

    async def hand_in() -> None:
        try:
            receipt = sign_read(key, w.map, w.map_owner, now)
            await asyncio.wait_for(FStreamClient(network.client_for(key), ip).read(receipt), READ_TIMEOUT_S)
        except PeerRejected as exc:  # refused: asking again would not help
            counters[f"read_refused:{exc.reason}"] += 1
            log.info("a read receipt of %s was refused at %s: %s", w.map[:16], ip, exc.reason)
            return
        except (PeerError, TimeoutError) as exc:
            sent.pop(slot, None)  # tried again at the next range
            counters["read_failed"] += 1
            log.info("a read receipt of %s was not handed in at %s: %s", w.map[:16], ip, exc or "timeout")
            return
        counters["read_sent"] += 1

    task = asyncio.ensure_future(hand_in())
    request.app[READ_TASKS].add(task)
    task.add_done_callback(request.app[READ_TASKS].discard)


def _session(request: web.Request) -> aiohttp.ClientSession:
    sessions = request.app[HTTP]
    if not sessions:
        sessions.append(aiohttp.ClientSession(timeout=TIMEOUT))
    return sessions[0]


class Unpaid(Exception):
    """An fStream endpoint wants a payment before it streams more to this wallet."""


def _node_at(request: web.Request, ip: str) -> str | None:
    """The node key of the fStream cell at `ip`, from its tree's member list (None if not listed)."""
    for m in request.app[NETWORK].cells[FSTREAM].members:
        if isinstance(m, dict) and m.get("ip") == ip and isinstance(m.get("pubkey"), str):
            return str(m["pubkey"])
    return None


async def _endpoints(request: web.Request) -> list[str]:
    network = request.app[NETWORK]
    entry = network.cells[FSTREAM]
    if not entry.endpoints:
        await network.refresh(FSTREAM)
    return list(entry.endpoints)


async def _relay(
    request: web.Request,
    response: web.StreamResponse,
    ip: str,
    obj: str,
    c_first: int,
    c_last: int,
    opener: RangeOpener | None,
) -> int:
    """Ciphertext bytes c_first..c_last of `obj` from the fStream cell at ip, opened (if private) into
    the response; how many of them arrived (also when the endpoint failed after some)."""
    port = dna_row(FSTREAM).mon_port
    url = f"http://{ip}:{port}/object/{obj}"
    headers = {"Range": f"bytes={c_first}-{c_last}"}
    node = _node_at(request, ip)
    state = request.app[STATE]
    if node is not None and state.wallet is not None:  # the wallet pays for what it watches
        clock = request.app[NETWORK].clock
        headers[viewer.HEADER] = viewer.sign_viewer(state.wallet.key, clock, node, port, obj, headers["Range"])
    got = 0
    # not followed: a cell at capacity redirects, and the header is addressed to this cell only
    async with _session(request).get(url, headers=headers, allow_redirects=False) as upstream:
        expect = f"bytes {c_first}-{c_last}/"
        if upstream.status == 402:
            request.app[COUNTERS]["endpoint_unpaid"] += 1
            raise Unpaid(ip)
        if upstream.status != 206 or not upstream.headers.get("Content-Range", "").startswith(expect):
            raise ValueError(f"{ip} answered {upstream.status} {upstream.headers.get('Content-Range', '')[:60]}")
        try:
            async for piece in upstream.content.iter_chunked(READ):
                piece = piece[: c_last - c_first + 1 - got]
                plain = opener.update(piece) if opener is not None else piece
                got += len(piece)
                if not response.prepared:
                    await response.prepare(request)
                if plain:
                    await response.write(plain)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if got:
                request.app[COUNTERS][f"endpoint_lost:{exc.__class__.__name__}"] += 1
                return got
            raise
    return got
