"""Key frames and content type from ffprobe's report on a media file, without I/O (`probe` runs it).

The times come from the container's own packets (WebM's blocks and cues, MP4's ``moov``) as
ffprobe lists them with ``-show_entries packet=pts_time,flags``: a packet flagged ``K`` starts a
key frame, where a player can begin decoding after a seek. The report is bounded and any line
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


def key_times_ms(packets_csv: str) -> list[int]:
    """Key-frame times in ms, ascending and distinct, from ``pts_time,flags`` lines (at most MAX_KEYS)."""
    keys: set[int] = set()
    for line in packets_csv.splitlines():
        pts, _, flags = line.strip().partition(",")
        if not flags.startswith("K"):
            continue
        try:
            seconds = float(pts)
        except ValueError:
            continue
        if 0 <= seconds < 2**40:
            keys.add(round(seconds * 1000))
    return sorted(keys)[:MAX_KEYS]
