"""The kiosk's first page (borgusb-kiosk.service, desktop image): a page in the kiosk's private runtime directory
that forwards to the conduit's link with its secret, so the secret is never on a command line
(/proc/PID/cmdline is readable by every process) and never on a disk. The conduit reads the same secret
(``--secret-file``); the kiosk gets it as a systemd credential, readable by its dynamic user only."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..conduitlink import forwarding_page, link

CONDUIT_PORT = 8088
PAGE = "open.html"


def write_page(credentials: Path, runtime: Path, port: int = CONDUIT_PORT) -> Path:
    secret = (credentials / "secret").read_text().strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{32,}", secret):
        raise ValueError("the kiosk's secret is not a URL-safe string of at least 32 characters")
    page = runtime / PAGE
    fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(forwarding_page(link(port, secret)))
    return page


def cmd_kiosk_page() -> int:
    try:
        credentials = Path(os.environ["CREDENTIALS_DIRECTORY"])
        runtime = Path(os.environ["RUNTIME_DIRECTORY"])
    except KeyError as exc:
        print(f"borgusb kiosk: {exc.args[0]} is not set (run by borgusb-kiosk.service)")
        return 1
    print(f"borgusb kiosk: first page {write_page(credentials, runtime)}")
    return 0
