"""Who hosted mode's processes run as: the watcher stays root; the node and each conduit get a user of their own.

Only the watcher needs root (udev, reading the block device, private mounts). The cells talk to the
network and a conduit holds the unlocked wallet, so each runs as a uid with no account, as systemd's
``DynamicUser=`` gives a service: picked from systemd's dynamic range, named by no passwd or group
entry and used by no running process when it is picked. Such a user owns nothing on the host's disks
and has no capabilities (the kernel clears them when root changes to it); the node's cells and each
conduit have different uids, so a cell cannot signal, trace or read a conduit. Not a system user:
creating one writes /etc/passwd on the host. Not ``nobody``: other daemons run as it.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

FIRST, LAST = 61184, 65519  # systemd's DynamicUser= range


@dataclass(frozen=True)
class Account:
    uid: int
    gid: int


def ids_in_use() -> set[int]:
    """Every uid and gid a running process holds (real, effective, saved, filesystem)."""
    found: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as fh:
                for line in fh:
                    if line.startswith(("Uid:", "Gid:")):
                        found.update(int(v) for v in line.split()[1:])
        except (OSError, ValueError):
            continue  # gone meanwhile
    return found


def named(uid: int) -> bool:
    """Whether the host knows this id as a user or a group (then it may own files somewhere)."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


def pick(exclude: Collection[int] = ()) -> Account:
    """A free uid (and the same gid) from the dynamic range; a random start keeps two watchers apart."""
    busy = ids_in_use() | set(exclude)
    span = LAST - FIRST + 1
    start = secrets.randbelow(span)
    for i in range(span):
        uid = FIRST + (start + i) % span
        if uid not in busy and not named(uid):
            return Account(uid, uid)
    raise RuntimeError(f"no free user id between {FIRST} and {LAST}")


def give(path: Path, account: Account) -> None:
    """Hand a directory tree in RAM to the account (it was made by root for it)."""
    os.chown(path, account.uid, account.gid, follow_symlinks=False)
    for top, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.chown(os.path.join(top, name), account.uid, account.gid, follow_symlinks=False)
