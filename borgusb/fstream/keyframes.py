"""Key frames and content type from ffprobe's report on a media file, without I/O (`probe` runs it).

The times and byte offsets come from the container's own packets (WebM's blocks and cues, MP4's
``moov``) as ffprobe lists them with ``-show_entries packet=pts_time,pos,flags``: a packet flagged
``K`` starts a key frame, where a player can begin decoding after a seek. The report is bounded and any line
that does not parse is skipped (the file is the owner's, but the parser never trusts it).
"""

from __future__ import annotations

from .streammap import MAX_KEYS

FORMATS = {  # ffprobe's format_name -> the type a browser is told
    "matroska,webm": "video/webm",
    "mov,mp4,m4a,3gp,3g2,mj2": "video/mp4",
    "ogg": "video/ogg",
    "mp3": "audio/mpeg",
}
DEFAULT_TYPE = "application/octet-stream"


def content_type(format_name: str, has_video: bool) -> str:
    """The type for ffprobe's format_name (an audio-only WebM or Ogg is audio/...)."""
    found = FORMATS.get(format_name.strip().strip('"'), DEFAULT_TYPE)
    if not has_video and found in ("video/webm", "video/ogg"):
        return "audio/" + found.split("/")[1]
    return found


def key_frames(packets_csv: str) -> list[tuple[int, int]]:
    """Key frames as (time in ms, byte offset), ascending in both and distinct, from ffprobe's
    ``pts_time,pos,flags`` lines (at most MAX_KEYS). A key frame whose offset is not past the one
    before it (a file whose index disagrees with itself) is left out: a seek uses the one before."""
    found: dict[int, int] = {}
    for line in packets_csv.splitlines():
        pts, pos, flags = (line.strip().split(",") + ["", ""])[:3]
        if not flags.startswith("K"):
            continue
        try:
            seconds, offset = float(pts), int(pos)
        except ValueError:
            continue
        if 0 <= seconds < 2**40 and 0 <= offset < 2**53:
            found.setdefault(round(seconds * 1000), offset)
    out: list[tuple[int, int]] = []
    for ms, offset in sorted(found.items()):
        if not out or offset > out[-1][1]:
            out.append((ms, offset))
    return out[:MAX_KEYS]
