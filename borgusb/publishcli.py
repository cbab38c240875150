"""`borgusb publish FILE`: a media file made watchable through fStream (`cells.fstream.publish`).

    borgusb publish clip.webm                   public: prints the watch link anyone can open
    borgusb publish clip.webm --private [--folder /Videos]
                                                into your file tree, encrypted: your Watch page
                                                plays it; `borgusb files share` gives it to others

A public file's shards are stored, then its stream map (type and key frames, read by ffprobe,
signed by your key) and a listing signed by your key, which every fStream cell keeps so that it
shows among the public media on Watch pages (``--unlisted``: by link only). A public video is
also encoded smaller (``--renditions``, 360p by default, with ffmpeg), so a Watch page on a slow
link switches to it instead of stopping (adaptive bitrate). The link is
``http://<node>:<fStream monPort>/stream/<map id>``, playable by any browser's ``<video>`` (byte
ranges). ``--json`` prints the ids, the link, the type and the key frames. The wallet signs
(``--keystore``/``--key-file``); ``--node`` as for ``borgusb put``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from . import dna
from .clitools import EXIT_CODES, EXIT_OK, EXIT_USAGE, CLIError, add_wallet_options, find_node, require_wallet
from .clitools import run as run_command
from .clock import SystemClock
from .envelope import Verifier
from .fstream.renditions import DEFAULT_HEIGHTS, LADDER
from .net.peer import PeerClient

SHARD = dna.get("shardTreeCell")
FTREE = dna.get("ftreeFileMgrCell")
FSTREAM = dna.get("fStreamCell")


def heights(text: str) -> tuple[int, ...]:
    """``--renditions``: comma-separated ladder heights, or ``none``."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        found = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"heights are numbers, e.g. 360,240 (got {text[:40]!r})") from None
    unknown = [h for h in found if h not in LADDER]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"{unknown[0]} is not a height of the ladder ({', '.join(map(str, sorted(LADDER)))})"
        )
    return found


def watch_link(node: str, map_id: str) -> str:
    host = f"[{node}]" if ":" in node else node
    return f"http://{host}:{FSTREAM.mon_port}/stream/{map_id}"


def _say(out: dict[str, Any], node: str) -> str:
    seconds = f", {len(out['keys'])} key frames" if out["keys"] else " (no key frames found: not audio or video?)"
    if out["private"]:
        return (
            f"{out['path']}: {out['size']} bytes, {out['type']}{seconds}, encrypted in your file tree.\n"
            "Watch it on your conduit's Watch page; give it to someone with 'borgusb files share'."
        )
    listed = "listed on Watch pages" if out.get("listed") else f"not listed ({out.get('not_listed', 'unlisted')})"
    alts = ", ".join(f"{a['h']}p" for a in out.get("alts", []))
    also = f"; also at {alts} for slow links" if alts else ""
    return (
        f"{watch_link(node, out['map'])}\n({out['size']} bytes, {out['type']}{seconds}{also}; anyone with the link "
        f"can watch; {listed})"
    )


async def _run(args: argparse.Namespace) -> int:
    from .cells.fstream.publish import publish
    from .storecli import _progress, load_key

    key = load_key(args)
    clock = SystemClock()
    async with PeerClient(key, clock, Verifier(clock), timeout_s=args.timeout) as peers:
        update, close = _progress("publish", not args.quiet)
        try:
            out = await publish(
                peers,
                args.node,
                SHARD.recp_port,
                Path(args.file),
                key,
                r=args.r,
                private=args.private,
                folder=args.folder,
                machine=args.machine,
                progress=update,
                listed=not args.unlisted,
                renditions=args.renditions,
            )
        finally:
            close()
    if not out["private"]:
        out["watch"] = watch_link(args.node, out["map"])
    print(json.dumps(out) if args.json else _say(out, args.node))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from .cli import COMMANDS

    p = argparse.ArgumentParser(
        prog="borgusb publish",
        description=COMMANDS["publish"].help,
        epilog=(
            "Public media can be watched by anyone with the link (the stream map is signed by your key, so "
            "nobody can change what it names); private media stay encrypted: only your conduit, or one you "
            "share the file with, opens them. " + EXIT_CODES
        ),
    )
    p.add_argument("file", help="the audio or video file (WebM, MP4, Ogg, MP3; ffprobe reads its key frames)")
    p.add_argument("--private", action="store_true", help="encrypted into your file tree instead of a public link")
    p.add_argument("--unlisted", action="store_true", help="public by link only: not listed on others' Watch pages")
    p.add_argument(
        "--renditions",
        type=heights,
        default=DEFAULT_HEIGHTS,
        metavar="H,H",
        help="a public video is also encoded at these heights below its own, for slow links "
        f"(of {', '.join(map(str, sorted(LADDER)))}; default {','.join(map(str, DEFAULT_HEIGHTS))}; 'none': no others)",
    )
    p.add_argument("--folder", default="/", help="with --private: the folder of your tree it goes into (default /)")
    add_wallet_options(p, "node (its shard cell and file manager)", "your wallet keystore (signs what you publish)",
                       "per-request timeout in seconds")  # fmt: skip
    p.add_argument("--r", type=int, default=int(os.environ.get("BORGUSB_SHARD_R", 3)), help="copies (default 3)")
    p.add_argument("--machine", default=socket.gethostname()[:64], help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        path = Path(args.file)
        if not path.is_file():
            raise CLIError(f"{path}: no such file", EXIT_USAGE)
        require_wallet(args, "what you publish is signed by your wallet")
        if args.node is None:
            cell = FTREE if args.private else SHARD
            args.node = find_node(cell.name, cell.recp_port)
        return asyncio.run(_run(args))

    return run_command("borgusb publish", SHARD.name, body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
