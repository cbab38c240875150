"""Sockets handed over by systemd socket activation (``sd_listen_fds`` without libsystemd).

A booted stick starts the conduit only when a browser first connects: systemd
listens on 127.0.0.1:8088 (``borgusb-conduit.socket``) and starts the service
with the listening socket as file descriptor 3. Until then the conduit costs no
memory and no boot time. The protocol: ``LISTEN_PID`` names the process meant
to take the sockets, ``LISTEN_FDS`` how many there are, starting at fd 3.
"""

from __future__ import annotations

import os
import socket

SD_LISTEN_FDS_START = 3


def listen_sockets() -> list[socket.socket]:
    """The listening sockets systemd passed to this process; [] when none were passed (or
    they were meant for another process, e.g. a parent that did not clear the variables).
    The variables are cleared either way, so that no child takes the sockets too."""
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    finally:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    if pid != os.getpid() or count <= 0:
        return []
    out = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)  # family and type are read from the descriptor
        sock.setblocking(False)
        out.append(sock)
    return out
