"""Run ffprobe (Debian's ffmpeg package) on a media file: its type and key frames (`keyframes`), its
bits per second and picture height (`media_info`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .keyframes import DEFAULT_TYPE, content_type, key_frames

TIMEOUT_S = 60
MAX_REPORT = 16 * 1024 * 1024  # ~20 bytes a packet: hours of video


def _ffprobe(*args: str) -> str:
    exe = shutil.which("ffprobe")
    if exe is None:
        raise FileNotFoundError("ffprobe is not installed (Debian's ffmpeg package)")
    done = subprocess.run([exe, "-v", "error", *args], capture_output=True, timeout=TIMEOUT_S, check=False)
    return done.stdout[:MAX_REPORT].decode("utf-8", "replace") if done.returncode == 0 else ""


def probe(path: Path) -> tuple[str, list[tuple[int, int]]]:
    """(content type, key frames as (time in ms, byte offset)) of a file; a file ffprobe cannot read is
    application/octet-stream with no key frames."""
    fmt = _ffprobe("-show_entries", "format=format_name", "-of", "csv=p=0", str(path)).strip()
    if not fmt:
        return DEFAULT_TYPE, []
    packets = _ffprobe(
        "-select_streams", "v:0", "-show_entries", "packet=pts_time,pos,flags", "-of", "csv=p=0", str(path)
    )
    return content_type(fmt, bool(packets.strip())), key_frames(packets)


def media_info(path: Path) -> tuple[int, int]:
    """(average bits per second, height of the first video stream) of a file; 0 for what ffprobe cannot say."""
    out = _ffprobe(
        "-select_streams", "v:0", "-show_entries", "stream=height:format=bit_rate", "-of", "default=nw=1", str(path)
    )
    found = {}
    for line in out.splitlines():
        name, _, value = line.partition("=")
        if value.strip().isdigit() and len(value.strip()) <= 12:
            found[name.strip()] = int(value)
    return found.get("bit_rate", 0), found.get("height", 0)
