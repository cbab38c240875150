"""The Pi tier: build the SD card image once per session (image/build_image.py --pi, cached
under ~/.cache/borgusb/image), read its partitions with mtools, boot it under TCG."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))

CACHE = Path(os.environ.get("BORGUSB_CACHE", Path.home() / ".cache" / "borgusb"))
BUILD_INFO = CACHE / "image" / "build-pi.json"


@pytest.fixture(scope="session")
def pi_build(tmp_path_factory) -> dict:
    """The image ./build.sh pi builds, by the same entry point; its build record."""
    if os.geteuid() != 0:
        pytest.fail("the Pi image tests need root (mkosi, loop-free mtools reads, QEMU): run ./build.sh test as root")
    for tool in ("mkosi", "qemu-system-aarch64", "sfdisk", "mcopy", "mdir"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: run ./build.sh setup (./build.sh pi installs the Pi tools)")
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        pytest.fail("no binfmt_misc handler for arm64 (qemu-user-static): run ./build.sh pi once, or ./build.sh test")
    log = tmp_path_factory.mktemp("pi-build") / "build.log"
    python = ROOT / ".venv" / "bin" / "python"
    with open(log, "w") as fh:
        proc = subprocess.run(
            [str(python if python.exists() else sys.executable), str(ROOT / "image" / "build_image.py"), "--pi"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    if proc.returncode != 0:
        pytest.fail("the Pi image build failed:\n" + log.read_text()[-6000:])
    return json.loads(BUILD_INFO.read_text())


@pytest.fixture(scope="session")
def pi_image(pi_build: dict) -> Path:
    return Path(pi_build["image"])
