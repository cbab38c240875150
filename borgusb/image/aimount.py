"""The stick's AI stack (part of the stick step): mount ``ai.squashfs`` from the BORGUSB partition.

llama-cpp-python, the agents' model and the memory search libraries stay on the stick, in one
read-only squashfs (image/ai_stack.py), so they cost the RAM root nothing: the pages an agent or a
search reads come from the stick into the page cache, which the kernel may drop again. The partition
stays mounted read-only for it (root only: ``umask=077``, the keystore is on it too), and the squashfs
is loop-mounted at /run/borgusb/ai, where the brain's and the memory cell's units find it
(``BORGUSB_AI_SITE``, borgusb.aisite). Pulling the stick powers the node off as before (nothing is
written, nothing waits for these mounts); an always-on node drops them lazily (`release`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..stick import FILESYSTEM
from .runtime import RUN

AI_FILE = "ai.squashfs"
STICKFS = RUN / "stickfs"  # the BORGUSB partition, kept mounted read-only while the AI stack is used
AI = RUN / "ai"  # the squashfs: site/ (BORGUSB_AI_SITE) holds llama_cpp, numpy, wordllama, bm25s, the model


def _mount(args: list[str]) -> str:
    """'' on success, else mount's message."""
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    return "" if done.returncode == 0 else (done.stderr.strip() or f"mount failed ({done.returncode})")


def mount_ai(device: Path) -> str:
    """Mount the AI stack if the stick holds one; what happened, in words for the console."""
    STICKFS.mkdir(parents=True, exist_ok=True, mode=0o700)
    options = "ro,nodev,nosuid,noexec,umask=077"
    failed = _mount(["-t", FILESYSTEM, "-o", options, str(device), str(STICKFS)])
    if failed:
        return f"no AI stack: the {device} partition could not be mounted again ({failed})"
    image = STICKFS / AI_FILE
    if not image.is_file():
        release()
        return "no AI stack on the stick (ai.squashfs): the agents have no local model, memories are not searched"
    AI.mkdir(parents=True, exist_ok=True, mode=0o755)
    failed = _mount(["-t", "squashfs", "-o", "ro,nodev,nosuid,loop", str(image), str(AI)])
    if failed:
        release()
        return f"the AI stack on the stick cannot be used: {failed}"
    return f"AI stack mounted from the stick ({image.stat().st_size // 2**20} MiB, read on use)"


def release() -> None:
    """Unmount both, lazily (a cell may still hold a file open); for a node that outlives its stick."""
    for point in (AI, STICKFS):
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)
        try:
            point.rmdir()
        except OSError:
            pass
