"""The conduit's link and a page that forwards to it: standard library only, so the booted stick's kiosk
(borgusb.image.kiosk) writes its first page without loading the conduit (borgusb.conduit.launch opens it in a
person's own browser on a PC)."""

from __future__ import annotations

import html

FRAGMENT_KEY = "k"  # the page script reads the secret from #k=…


def link(port: int, secret: str) -> str:
    """The address to open: the conduit on loopback, with its secret in the fragment."""
    return f"http://127.0.0.1:{port}/#{FRAGMENT_KEY}={secret}"


def forwarding_page(url: str) -> str:
    """A page that sends the browser on to `url` at once (no script: a meta refresh, and a link)."""
    quoted = html.escape(url, quote=True)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0;url={quoted}"><title>BorgUSB</title></head>\n'
        f'<body><p><a href="{quoted}">Open your BorgUSB conduit</a></p></body></html>\n'
    )
