"""The hosted-mode bundle on the stick's data partition: run BorgUSB with the host's python3, no pip.

Layout on the partition::

    borgusb-hosted              the launcher (sh): picks hosted/site-cpXY for the host's python3
    hosted/site-cp311/          BorgUSB and every dependency, unpacked wheels (manylinux for
                                compiled ones: cryptography, coincurve, aiohttp, ...)

Python imports the packages straight from the stick (read-only is enough; no
bytecode is written: -B and PYTHONDONTWRITEBYTECODE), so nothing is extracted
to the host's disk. FAT has no case-sensitive names and no symlinks: the build
refuses a wheel set that would collide.

``python3 -m borgusb.hosted.bundle WHEELS_DIR DEST [--borgusb-src DIR]``
"""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

LAUNCHER = r"""#!/bin/sh
# BorgUSB hosted mode, started from the stick itself with this computer's python3 (3.11+).
#   sh /media/$USER/BORGUSB/borgusb-hosted            (add --open to open the browser)
# Nothing is installed or written on this computer: Python loads BorgUSB from the
# stick, writes no bytecode, and keeps all state in RAM. Run it with sudo to get a
# private mount namespace and a private RAM directory.
HERE=$(cd "$(dirname "$0")" && pwd -P)
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || { echo "borgusb-hosted: python3 (3.11 or newer) is needed" >&2; exit 1; }
TAG=$("$PY" -B -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
SITE="$HERE/hosted/site-$TAG"
if [ ! -d "$SITE" ]; then
    echo "borgusb-hosted: this computer's python3 is $TAG; the stick carries:" \
        $(ls "$HERE/hosted" 2>/dev/null | sed -n 's/^site-//p') >&2
    exit 1
fi
export PYTHONPATH="$SITE" PYTHONDONTWRITEBYTECODE=1 PYTHONNOUSERSITE=1 HISTFILE=/dev/null
exec "$PY" -B -s -m borgusb.hosted --stick-dir "$HERE" "$@"
"""


class BundleError(Exception):
    pass


def python_tag(wheels: Path) -> str:
    tags = {w.name.split("-")[2] for w in wheels.glob("*.whl") if w.name.split("-")[2].startswith("cp3")}
    tags = {t for t in tags if t != "cp37" and t != "cp38"}  # abi3 wheels name their minimum
    if len(tags) != 1:
        raise BundleError(f"expected wheels for one CPython version in {wheels}, found {sorted(tags)}")
    return tags.pop()


def build(wheels: Path, dest: Path, borgusb_src: Path | None = None) -> Path:
    """Unpack every wheel into dest/hosted/site-cpXY and write dest/borgusb-hosted. Returns the site dir."""
    tag = python_tag(wheels)
    site = dest / "hosted" / f"site-{tag}"
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    seen: dict[str, str] = {}
    for whl in sorted(wheels.glob("*.whl")):
        name = whl.name.split("-")[0].lower()
        if name == "pip" or (name == "borgusb" and borgusb_src is not None):
            continue
        with zipfile.ZipFile(whl) as zf:
            for info in zf.infolist():
                key = info.filename.lower().rstrip("/")
                if key in seen and seen[key] != info.filename.rstrip("/"):
                    raise BundleError(f"{info.filename} and {seen[key]} differ only in case: FAT cannot hold both")
                seen[key] = info.filename.rstrip("/")
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise BundleError(f"{whl.name} holds a symlink ({info.filename}): FAT cannot hold it")
            zf.extractall(site)
    if borgusb_src is not None:
        shutil.copytree(borgusb_src, site / "borgusb", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for cache in site.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    launcher = dest / "borgusb-hosted"
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
    return site


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python3 -m borgusb.hosted.bundle")
    p.add_argument("wheels", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--borgusb-src", type=Path)
    args = p.parse_args(argv)
    site = build(args.wheels, args.dest, args.borgusb_src)
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    print(f"hosted-mode bundle: {site} ({size / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
