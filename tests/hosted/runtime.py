"""BorgUSB as a person installs it for hosted mode: somewhere every user can read.

The watcher runs its cells and conduits as users of their own, which must be able to run the
interpreter and import BorgUSB. A checkout or a venv may sit in root's private home, so the tests use
the host's own python3 (Debian's, 3.11) and BorgUSB with its dependencies unpacked from the image's
wheel cache (the stick's bundle) into a world-readable directory under /opt, where a person would
install it: outside the places hosted mode covers with RAM (/tmp, /var/tmp, /dev/shm) and those the
no-trace test watches.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEELS = Path(os.environ.get("BORGUSB_CACHE", Path.home() / ".cache" / "borgusb")) / "image" / "wheels"


def host_python() -> str | None:
    """The host's python3 if it is 3.11 (the bundle's wheels are cp311)."""
    for cand in ("/usr/bin/python3", shutil.which("python3")):
        if (
            cand
            and subprocess.run([cand, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 11))"]).returncode == 0
        ):
            return cand
    return None


def current_wheels() -> None:
    """The image's wheel cache at the lock's exact versions (the same step ./build.sh takes; cached)."""
    spec = importlib.util.spec_from_file_location("build_image", ROOT / "image" / "build_image.py")
    assert spec is not None and spec.loader is not None
    build_image = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_image)
    build_image.build_wheels(worktree=True)


@dataclass
class Runtime:
    python: str
    base: Path  # world-readable, removed at the end of the session
    site: Path  # BorgUSB and every dependency

    def readable_dir(self, name: str) -> Path:
        """A directory the unprivileged users can read (for code a test adds, like a new cell type)."""
        path = self.base / name
        path.mkdir(mode=0o755)
        return path

    def env(self, *extra: Path) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (*extra, self.site))}


def make_runtime(python: str) -> Runtime:
    from borgusb.hosted.bundle import build

    current_wheels()
    base = Path(tempfile.mkdtemp(prefix="borgusb-hosted-test-", dir="/opt"))
    base.chmod(0o755)
    site = build(WHEELS, base, borgusb_src=ROOT / "borgusb")
    for path in [site, *site.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return Runtime(python, base, site)


def copy_readable(src: Path, dest: Path) -> Path:
    """A copy of a source tree the unprivileged users can read."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest
