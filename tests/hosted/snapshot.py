"""A snapshot of the places a program could write on the host: paths, sizes, mtimes, hashes of small files."""

from __future__ import annotations

import hashlib
import os
import stat

PLACES = ("/tmp", "/var/tmp", "/var/log", "/root", "/home", "/etc", "/run", "/dev/shm", "/var/cache", "/var/lib")
# Where the kernel or the machine's own tooling writes, not a program run by the person.
KERNEL = ("/run/netns", "/run/udev")  # network namespaces; udevd's own database of every device event
HASH_MAX = 64 * 1024
# Big trees nobody writes to during a test (toolchains, the image build cache): stat only, no hashes.
STAT_ONLY = ("/root/.rustup", "/root/.pyenv", "/root/.m2", "/root/.cache/borgusb/image")


def snapshot(ignore: list[str] = ()) -> dict[str, tuple]:
    skip = tuple(ignore) + KERNEL
    out: dict[str, tuple] = {}
    for top in PLACES:
        stack = [top]
        while stack:
            d = stack.pop()
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                p = e.path
                if p.startswith(skip):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    out[p] = ("dir", st.st_mtime_ns)
                    if not os.path.ismount(p) or p in PLACES:
                        stack.append(p)
                elif stat.S_ISREG(st.st_mode):
                    h = ""
                    if st.st_size <= HASH_MAX and not p.startswith(STAT_ONLY):
                        try:
                            with open(p, "rb") as fh:
                                h = hashlib.sha256(fh.read()).hexdigest()
                        except OSError:
                            h = "?"
                    out[p] = ("file", st.st_size, st.st_mtime_ns, h)
                else:
                    out[p] = ("other", st.st_mode)
    return out


def diff(a: dict[str, tuple], b: dict[str, tuple]) -> dict[str, str]:
    changes = {}
    for p in a.keys() | b.keys():
        if p not in a:
            changes[p] = "new"
        elif p not in b:
            changes[p] = "deleted"
        elif a[p] != b[p]:
            changes[p] = "changed"
    return changes
