"""Smaller renditions of a video for adaptive playback, made with Debian's ffmpeg.

A person on a slow link should see the video smaller rather than stop every few seconds. At
publishing, each height of the ladder below the source's is encoded once (VP8 and Opus in WebM:
what every browser plays, encoded fast with libvpx's realtime mode), stored like any object, and
named in the source's stream map (`streammap.Rendition`); the player switches between them as its
link allows (the Watch page's script).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

# height -> video bits per second: about half of what common ladders use for VP9, for VP8 realtime
LADDER = {144: 120_000, 240: 250_000, 360: 500_000, 480: 900_000, 720: 1_800_000}
DEFAULT_HEIGHTS = (360,)
AUDIO_BPS = 48_000
TIMEOUT_S = 3600  # an hour-long video at 360p on two cores, with room to spare


def heights_below(source_height: int, wanted: Sequence[int]) -> list[int]:
    """The ladder heights to make for a source this tall: those asked for, known and smaller, tallest first."""
    return sorted({h for h in wanted if h in LADDER and 0 < h < source_height}, reverse=True)


def transcode(source: Path, height: int, out: Path) -> Path:
    """`source` re-encoded at `height` (width kept in proportion) into `out` (WebM); raises
    `RuntimeError` with ffmpeg's last words when it fails."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise FileNotFoundError("ffmpeg is not installed (Debian's ffmpeg package)")
    bps = LADDER[height]
    cmd = [
        exe, "-v", "error", "-nostdin", "-y", "-i", str(source),
        "-map", "0:v:0", "-map", "0:a:0?",
        "-vf", f"scale=-2:{height}",
        "-c:v", "libvpx", "-b:v", str(bps), "-maxrate", str(bps * 3 // 2), "-bufsize", str(bps * 2),
        "-deadline", "realtime", "-cpu-used", "8", "-g", "50",
        "-c:a", "libopus", "-b:a", str(AUDIO_BPS),
        "-f", "webm", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, check=False)
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"ffmpeg could not make the {height}p rendition: {said[0][:200]}")
    return out
