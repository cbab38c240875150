"""The link that opens the conduit, and opening it without putting the secret on a command line.

The conduit's secret reaches the person's browser in one place: the fragment
of the link the conduit prints when it starts (``http://127.0.0.1:PORT/#k=…``).
A browser never sends a fragment to a server or in a Referer, and the page
script removes it from the address bar at once. Opening that link through a
browser's command line would show the secret to every local user for as long
as the browser runs (``/proc/PID/cmdline``), so `open_in_browser` opens a small
page instead, readable only by this user and kept in RAM, that forwards to the
link (Jupyter does the same).
"""

from __future__ import annotations

import os
import tempfile
import webbrowser
from pathlib import Path

from ..conduitlink import FRAGMENT_KEY, forwarding_page, link

__all__ = ["FRAGMENT_KEY", "forwarding_page", "link", "open_in_browser", "ram_directory"]


def ram_directory() -> Path | None:
    """A directory in RAM: $XDG_RUNTIME_DIR (this user's), else /dev/shm; None if neither is writable."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        return Path(runtime)
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return Path("/dev/shm")
    return None


def open_in_browser(url: str, directory: Path | None = None) -> Path | None:
    """Open `url` in the default browser through a forwarding page (mode 0600, in RAM).

    Returns the page's path (the caller removes it when the conduit stops), or
    None when there is no RAM directory to put it in: then nothing is opened
    and the person opens the printed link themselves.
    """
    where = directory or ram_directory()
    if where is None:
        return None
    fd, name = tempfile.mkstemp(prefix="borgusb-open-", suffix=".html", dir=where)  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as page:
        page.write(forwarding_page(url))
    path = Path(name)
    webbrowser.open(path.as_uri())
    return path
