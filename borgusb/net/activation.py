"""systemd's protocols without libsystemd: sockets handed over by socket activation
(``sd_listen_fds``) and state notifications (``sd_notify``).

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


def notify(state: str, fds: list[int] | None = None) -> bool:
    """Tell systemd about this service (``READY=1``, ``MAINPID=N`` ...): ``sd_notify`` on the socket
    named by ``NOTIFY_SOCKET``. False (and nothing sent) when no service manager is listening."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path or path[0] not in "/@":
        return False
    address = "\0" + path[1:] if path[0] == "@" else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            if fds:
                socket.send_fds(sock, [state.encode()], fds)
            else:
                sock.sendall(state.encode())
        except OSError:
            return False
    return True


def notify_barrier(timeout_s: float = 5.0) -> bool:
    """Wait until systemd has processed every notification sent before (``sd_notify_barrier``):
    it closes the pipe end sent with ``BARRIER=1`` once it has."""
    import select

    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        sent = notify("BARRIER=1", [write_end])
        os.close(write_end)
        write_end = -1
        return sent and bool(select.select([read_end], [], [], timeout_s)[0])
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
