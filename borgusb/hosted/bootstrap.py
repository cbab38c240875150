"""The first Python that runs from a stick: copy the bundle into RAM, check every file, run only the copy.

``sudo sh /media/$USER/BORGUSB/borgusb-hosted`` starts the host's own python3 in isolated mode (``-I``:
no PYTHONPATH, no user site, not the script's directory on sys.path) on ``hosted/boot.py``, which is this
module with ``MANIFEST`` filled in by the image build (borgusb.hosted.bundle). Python parses the whole
file before its first line runs, so the hash list cannot change under it. Then:

1. a RAM directory only its owner can enter: as root a fresh tmpfs (mode 0700) in a mount namespace of
   its own, mounted on an empty directory under /run (the tmpfs goes with the namespace's last process,
   even after SIGKILL); without root a directory of mode 0700 in $XDG_RUNTIME_DIR (else /dev/shm);
2. every file the manifest names is read once from the stick, hashed, and written into the RAM copy from
   the very bytes that were hashed, so nothing can be swapped between the check and the use. A missing
   or different file stops everything with one clear message before any code from the stick has run. A
   file the manifest does not name (a ``sitecustomize.py``, a ``.pth``) is never copied, so never read;
3. as root the copy is then made readable by everyone and writable by no one (files 0644, directories
   0755, the tmpfs remounted read-only): hosted mode's cells and conduits run as users of their own and
   import the same checked code;
4. ``python3 -B -P -s -m borgusb.hosted --code-dir COPY …`` replaces this process, with PYTHONPATH naming
   the copy alone, no other PYTHON* variable, and the working directory inside the copy. The watcher
   removes the copy when it stops.

Standard library only: nothing of BorgUSB is trusted before it has been checked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import shutil
import stat
import sys
import tempfile

MANIFEST: dict[str, str] = {}  # filled in by bundle.build: path under hosted/ -> sha256 of the file's bytes

MAX_FILE = 256 << 20  # no file of the bundle is bigger (the largest, cryptography's library, is ~20 MiB)
RAM_SIZE = "256m"
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 0x4000, 1 << 18


class Refused(Exception):
    """The stick's bundle cannot be run; the message says why, for the person at the terminal."""


def python_tag() -> str:
    return "cp{}{}".format(*sys.version_info[:2])


def site_of(manifest: dict[str, str], tag: str) -> str:
    """The bundle's directory for this interpreter (``site-cp311``), or Refused naming what the stick has."""
    sites = sorted({name.split("/", 1)[0] for name in manifest})
    if f"site-{tag}" not in sites:
        have = ", ".join(s[len("site-") :] for s in sites) or "nothing"
        raise Refused(f"this computer's python3 is {tag}; the stick carries BorgUSB for: {have}")
    return f"site-{tag}"


def _safe(name: str) -> bool:
    parts = name.split("/")
    return not name.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def copy_checked(src: str, dest: str, manifest: dict[str, str], site: str) -> int:
    """Copy every file of `site` the manifest names from `src` to `dest`, each written from the bytes whose
    hash matched; Refused at the first missing or different file. Returns the bytes copied."""
    total = 0
    for name in sorted(n for n in manifest if n.startswith(site + "/")):
        if not _safe(name):
            raise Refused(f"the bundle's manifest names {name!r}, which is not a path inside the bundle")
        data = _read(os.path.join(src, name), name)
        if hashlib.sha256(data).hexdigest() != manifest[name]:
            raise Refused(
                f"hosted/{name} on the stick differs from the file the image build recorded: the stick "
                "was changed after it was built. Nothing from it was run. Write a fresh image to the stick "
                "(or copy the hosted/ folder and borgusb-hosted of one onto it)"
            )
        path = os.path.join(dest, name)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        total += len(data)
    return total


def _read(path: str, name: str) -> bytes:
    """The file's bytes, opened once: never through a symlink, never a directory, FIFO or device."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise Refused(f"hosted/{name} is missing on the stick: the bundle is incomplete; nothing was run") from None
    except OSError as exc:
        raise Refused(f"cannot read hosted/{name} on the stick ({exc.strerror}): nothing was run") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE:
        os.close(fd)
        raise Refused(f"hosted/{name} on the stick is not a regular file of the bundle: nothing was run")
    with os.fdopen(fd, "rb") as fh:
        return fh.read(MAX_FILE + 1)


# ---------------------------------------------------------------- the RAM directory


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _sys(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    kind = fstype.encode() if fstype else None
    rc = _libc.mount(source.encode(), target.encode(), kind, flags, data.encode() if data else None)
    _sys(rc, f"mounting {fstype or source} on {target}")


def make_ram_dir() -> str:
    """As root: an empty directory under /run with a private tmpfs (0700) on it, in a mount namespace of
    this process's own. Otherwise: a 0700 directory in this user's RAM ($XDG_RUNTIME_DIR, else /dev/shm)."""
    if os.geteuid() != 0:
        base = os.environ.get("XDG_RUNTIME_DIR") or "/dev/shm"
        return tempfile.mkdtemp(prefix="borgusb-hosted-code-", dir=base)
    _sys(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    base = "/run" if os.path.isdir("/run") else "/dev/shm"
    path = tempfile.mkdtemp(prefix="borgusb-hosted-code-", dir=base)
    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0700,size={RAM_SIZE}")
    return path


def seal(path: str) -> None:
    """As root: everyone may read and import the checked copy, no one may change it."""
    for top, _dirs, files in os.walk(path):
        os.chmod(top, 0o755)
        for name in files:
            os.chmod(os.path.join(top, name), 0o644)
    _mount("none", path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def remove_ram_dir(path: str) -> None:
    if os.geteuid() == 0:
        _libc.umount2(path.encode(), 2)  # MNT_DETACH
        os.rmdir(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- main


def main(argv: list[str], manifest: dict[str, str], here: str) -> int:
    """Check and copy the bundle at `here` (the stick's hosted/ folder), then become the watcher."""
    try:
        site = site_of(manifest, python_tag())
    except Refused as exc:
        print(f"borgusb-hosted: {exc}", file=sys.stderr)
        return 1
    try:
        code = make_ram_dir()
    except OSError as exc:
        print(f"borgusb-hosted: cannot make a private RAM directory for the checked copy ({exc})", file=sys.stderr)
        return 2
    try:
        size = copy_checked(here, code, manifest, site)
        if os.geteuid() == 0:
            seal(code)
    except (Refused, OSError) as exc:
        remove_ram_dir(code)
        print(f"borgusb-hosted: refused: {exc}", file=sys.stderr)
        return 2
    print(
        f"borgusb-hosted: {len([n for n in manifest if n.startswith(site + '/')])} files "
        f"({size / 2**20:.0f} MiB) copied into RAM at {code} and checked against the stick's build",
        flush=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(
        PYTHONPATH=os.path.join(code, site), PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1", HISTFILE="/dev/null"
    )
    os.chdir(code)
    args = [sys.executable, "-B", "-P", "-s", "-m", "borgusb.hosted", "--code-dir", code, *argv]
    try:
        os.execve(sys.executable, args, env)
    except OSError as exc:
        remove_ram_dir(code)
        print(f"borgusb-hosted: cannot start {sys.executable} ({exc.strerror})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], MANIFEST, os.path.dirname(os.path.abspath(__file__))))
