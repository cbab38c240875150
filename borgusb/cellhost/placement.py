"""Put a forked cell where the unit that asked for it lives: its cgroup, mount namespace and user.

Runs in the forked child while it is still root, before anything of the cell
runs. Everything is read from the kernel about the requesting process (its
pid, uid and gid come from SO_PEERCRED, not from what it says), so a caller
can never get more than it already has: the child ends up with the caller's
own cgroup, filesystem view and identity.
"""

from __future__ import annotations

import ctypes
import os
import resource
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS = 0x00020000
PR_SET_NO_NEW_PRIVS = 38


def cgroup2_root() -> Path:
    """Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup (unified, as systemd sets up the image)
    or /sys/fs/cgroup/unified (the hybrid layout of older hosts)."""
    for candidate in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (candidate / "cgroup.procs").exists():
            return candidate
    return Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Caller:
    """The process on the other end of the host's socket, as the kernel reports it (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True)
class Placement:
    """Where a child goes, resolved while the caller still waits for its answer (it may exit right after)."""

    uid: int
    gid: int
    cgroup: str | None  # the caller's cgroup v2 path when it differs from the host's
    mount_ns: int | None  # an open descriptor of the caller's mount namespace when it differs from the host's

    @classmethod
    def of(cls, caller: Caller) -> Placement:
        if os.geteuid() != 0:  # an unprivileged host can only fork cells that run as itself, where it is
            return cls(os.getuid(), os.getgid(), None, None)
        group = cgroup_of(caller.pid)
        mine, theirs = Path("/proc/self/ns/mnt"), Path(f"/proc/{caller.pid}/ns/mnt")
        ns = None
        if os.stat(mine).st_ino != os.stat(theirs).st_ino:
            ns = os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)
        return cls(caller.uid, caller.gid, group if group != cgroup_of(os.getpid()) else None, ns)

    def close(self) -> None:
        if self.mount_ns is not None:
            os.close(self.mount_ns)


def cgroup_of(pid: int) -> str | None:
    """The cgroup v2 path of a process (``0::/system.slice/...``), or None without cgroup v2."""
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        return None
    return None


def join_cgroup(path: str, pid: int | None = None) -> None:
    """Move pid (default: this process) into the cgroup at path."""
    (cgroup2_root() / path.lstrip("/") / "cgroup.procs").write_text(f"{pid or os.getpid()}\n")


def join_mount_namespace(fd: int) -> None:
    """Enter a mount namespace (the unit's sandbox: read-only system, private /tmp ...)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns into the unit's mount namespace: {os.strerror(err)}")
    os.chdir("/")


def become(where: Placement) -> None:
    """In the forked child, still root: the caller's cgroup, mount namespace and identity, no core
    dumps, no new privileges."""
    if where.cgroup is not None:
        join_cgroup(where.cgroup)
    if where.mount_ns is not None:
        join_mount_namespace(where.mount_ns)
        where.close()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if (os.getuid(), os.getgid()) != (where.uid, where.gid):
        os.setgroups([])
        os.setgid(where.gid)
        os.setuid(where.uid)
    ctypes.CDLL(None).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
