"""Read the Pi SD card image without mounting it (the host kernel has no partition
parsers): sfdisk for the MBR, mtools at each partition's byte offset."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

SECTOR = 512
ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def table(image: Path) -> dict:
    out = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["partitiontable"]


def offsets(image: Path) -> list[int]:
    return [p["start"] * SECTOR for p in table(image)["partitions"]]


def fat_label(image: Path, offset: int) -> str:
    out = subprocess.run(
        ["mlabel", "-s", "-i", f"{image}@@{offset}", "::"], capture_output=True, text=True, env=ENV, check=True
    ).stdout
    return out.split("is", 1)[-1].strip()


def listing(image: Path, offset: int) -> list[str]:
    out = subprocess.run(
        ["mdir", "-b", "-i", f"{image}@@{offset}", "::/"], capture_output=True, text=True, env=ENV, check=True
    ).stdout
    return sorted(line.strip().removeprefix("::/") for line in out.splitlines() if line.strip())


def read(image: Path, offset: int, name: str) -> bytes:
    return subprocess.run(
        ["mtype", "-i", f"{image}@@{offset}", f"::/{name}"], capture_output=True, env=ENV, check=True
    ).stdout


def extract(image: Path, offset: int, name: str, dst: Path) -> Path:
    subprocess.run(["mcopy", "-n", "-i", f"{image}@@{offset}", f"::/{name}", str(dst)], env=ENV, check=True)
    return dst


def put(image: Path, offset: int, name: str, data: bytes, tmp: Path) -> None:
    src = tmp / name
    src.write_bytes(data)
    subprocess.run(["mcopy", "-o", "-i", f"{image}@@{offset}", str(src), f"::/{name}"], env=ENV, check=True)
