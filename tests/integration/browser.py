"""Debian's Chromium for the conduit's browser tests (Playwright drives it; its own download cannot work here)."""

from __future__ import annotations

import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# headless as root, and quiet: without the background-networking flags Chromium keeps calling hosts
# this machine's closed network refuses
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
