"""The hosted-mode bundle on the stick's data partition: run BorgUSB with the host's python3, no pip.

Layout on the partition::

    borgusb-hosted              the launcher (sh): the host's python3 -I on hosted/boot.py
    hosted/boot.py              borgusb/hosted/bootstrap.py with the sha256 of every file below,
                                recorded here, at build time
    hosted/site-cp311/          BorgUSB and every dependency, unpacked wheels (manylinux for
                                compiled ones: cryptography, coincurve, aiohttp, ...)

Nothing runs from the stick itself: boot.py copies the files its manifest names into RAM, checks each
against its recorded hash, and runs Python from that copy (see bootstrap.py for what it does and does
not stop). No bytecode is written (-B and PYTHONDONTWRITEBYTECODE). FAT has no case-sensitive names
and no symlinks: the build refuses a wheel set that would collide.

``python3 -m borgusb.hosted.bundle WHEELS_DIR DEST [--borgusb-src DIR]``
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import zipfile
from pathlib import Path

from ..stick import BOOT, BUNDLE_DIR, LAUNCHER

LAUNCHER_SH = r"""#!/bin/sh
# BorgUSB hosted mode, started from the stick itself with this computer's python3 (3.11+).
#   sudo sh /media/$USER/BORGUSB/borgusb-hosted       (add --open to open the browser)
# Nothing is installed or written on this computer. hosted/boot.py copies BorgUSB into RAM,
# checks every file against the hashes recorded when the stick was built, and runs only that
# copy; its state stays in RAM. Run it with sudo to get a private mount namespace.
HERE=$(cd "$(dirname "$0")" && pwd -P)
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || { echo "borgusb-hosted: python3 (3.11 or newer) is needed" >&2; exit 1; }
exec "$PY" -I -B "$HERE/hosted/boot.py" --stick-dir "$HERE" "$@"
"""
MANIFEST_STUB = "MANIFEST: dict[str, str] = {}"  # the line of bootstrap.py that the build fills in


class BundleError(Exception):
    pass


def python_tag(wheels: Path) -> str:
    parts = [w.name.split("-") for w in wheels.glob("*.whl")]
    # abi3 wheels (cp37-abi3, cp310-abi3, ...) name the oldest CPython they run on, not the one built for
    tags = {p[2] for p in parts if len(p) >= 5 and p[2].startswith("cp3") and p[3] != "abi3"}
    if len(tags) != 1:
        raise BundleError(f"expected wheels for one CPython version in {wheels}, found {sorted(tags)}")
    return tags.pop()


def build(wheels: Path, dest: Path, borgusb_src: Path | None = None) -> Path:
    """Unpack every wheel into dest/hosted/site-cpXY, write hosted/boot.py with the hash of every file
    and dest/borgusb-hosted. Returns the site dir."""
    tag = python_tag(wheels)
    site = dest / BUNDLE_DIR / f"site-{tag}"
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
    (dest / BOOT).write_text(boot_script(manifest(dest / BUNDLE_DIR)))
    launcher = dest / LAUNCHER
    launcher.write_text(LAUNCHER_SH)
    launcher.chmod(0o755)
    return site


def manifest(bundle: Path) -> dict[str, str]:
    """sha256 of every file under the bundle's site directories, by path relative to `bundle` (hosted/)."""
    out: dict[str, str] = {}
    for path in sorted(bundle.glob("site-*/**/*")):
        if path.is_symlink() or not path.is_file():
            continue
        out[path.relative_to(bundle).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def boot_script(files: dict[str, str]) -> str:
    """bootstrap.py with its MANIFEST filled in: the hash list travels inside the code that checks it."""
    lines = Path(__file__).with_name("bootstrap.py").read_text().splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.startswith(MANIFEST_STUB)]
    if len(at) != 1:
        raise BundleError(f"bootstrap.py must start exactly one line with {MANIFEST_STUB!r}")
    literal = json.dumps(files, indent=0, sort_keys=True)  # a dict of strings: a Python literal too
    lines[at[0]] = f"MANIFEST: dict[str, str] = {literal}\n"
    return "".join(lines)


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
