"""The QEMU tier: build the stick image once per session, boot copies of it."""

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
BUILD_INFO = CACHE / "image" / "build.json"
DESKTOP_BUILD_INFO = CACHE / "image" / "build-desktop.json"


@pytest.fixture(scope="session")
def stick_image(tmp_path_factory) -> Path:
    """The image ./build.sh builds, built by the same entry point (image/build_image.py)."""
    return build(tmp_path_factory, [], BUILD_INFO)


@pytest.fixture(scope="session")
def desktop_image(tmp_path_factory) -> Path:
    """The desktop stick (./build.sh image --profile desktop): the conduit on the machine's own screen."""
    return build(tmp_path_factory, ["--desktop"], DESKTOP_BUILD_INFO)


def build(tmp_path_factory, args: list[str], info_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.fail("the image tests need root (mkosi, QEMU, network namespaces): run ./build.sh test as root")
    for tool in ("mkosi", "qemu-system-x86_64", "sfdisk", "mcopy", "mkfs.ext4", "tesseract"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: run ./build.sh setup")
    log = tmp_path_factory.mktemp("image-build") / "build.log"
    python = ROOT / ".venv" / "bin" / "python"
    with open(log, "w") as fh:
        proc = subprocess.run(
            [str(python if python.exists() else sys.executable), str(ROOT / "image" / "build_image.py"), *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    if proc.returncode != 0:
        pytest.fail("the image build failed:\n" + log.read_text()[-6000:])
    info = json.loads(info_path.read_text())
    return Path(info["image"])


@pytest.fixture
def stick_copy(stick_image: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the stick for one test (deleted with tmp_path)."""
    dst = tmp_path / "stick.img"
    subprocess.run(["cp", "--sparse=always", str(stick_image), str(dst)], check=True)
    return dst
