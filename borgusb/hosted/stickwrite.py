"""The one write a conduit may ask of the stick, its new wallet keystore, made by the watcher.

A conduit runs as a user of its own (users.py): it can neither open the block device nor mount it, nor
write where the desktop mounted the stick. It sends the keystore's bytes over a socket pair the watcher
gave it (``--writer-fd``); the watcher checks that they are a wallet keystore, that the stick held none
when it was read and that this session has not written one yet, writes them atomically (stickfs) and
answers. So a conduit taken over can at most put one wallet keystore onto a stick that had none: never
another file (the launcher or the bundle, which root runs), never over the person's wallet.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

from .. import keystore
from ..stick import KEYSTORE
from .stickfs import StickDir, StickFS

MAX_REQUEST = 64 << 10  # a keystore is about 1 KiB
REPLY_TIMEOUT_S = 120.0  # an mtools write on a slow stick takes a second or two


class StickWriteError(ValueError):
    """A write to the stick failed (the conduit shows ValueError messages to the person)."""


def pulled(why: str) -> str:
    return (
        f"the wallet could not be written to the stick ({why}): was it pulled out? "
        "Nothing was lost: the stick still holds its previous keystore (or none). Insert it again and repeat."
    )


class WriteService:
    """The watcher's side, one per session: a thread that answers its conduit's write requests."""

    def __init__(self, store: StickFS | StickDir, may_write: bool, log: Callable[[str], None], name: str) -> None:
        self.store, self.may_write, self.log, self.name = store, may_write, log, name
        self.sock, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.thread = threading.Thread(target=self._serve, name=f"stickwrite-{name}", daemon=True)
        self.thread.start()

    def handed_over(self) -> None:
        """The conduit has its end: the watcher keeps none of it."""
        self.peer.close()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.peer.close()

    def _serve(self) -> None:
        while True:
            try:
                data = self.sock.recv(MAX_REQUEST + 1)
                if not data:
                    return
                self.sock.send(json.dumps(self.handle(data)).encode())
            except OSError:
                return

    def handle(self, data: bytes) -> dict[str, Any]:
        refusal = self.refusal(data)
        if refusal is not None:
            self.log(f"{self.name}: refused to write to the stick: {refusal}")
            return {"ok": False, "error": refusal}
        try:
            self.store.write_atomic(KEYSTORE, data)
        except OSError as exc:
            return {"ok": False, "error": pulled(exc.strerror or str(exc))}
        self.may_write = False
        self.log(f"{self.name}: the new wallet keystore was written to the stick ({self.store.backend})")
        return {"ok": True}

    def refusal(self, data: bytes) -> str | None:
        if not self.may_write:
            return "the stick already holds a wallet keystore, which is never overwritten here"
        if len(data) > MAX_REQUEST:
            return f"a keystore is never larger than {MAX_REQUEST} bytes"
        try:
            doc = keystore.parse(data)
        except keystore.KeystoreError as exc:
            return f"what was sent is not a keystore ({exc})"
        if doc.get("kind") != "wallet":
            return f"what was sent is a {doc.get('kind')} keystore, not a wallet's"
        return None


class RemoteWriter:
    """The conduit's side: writes a keystore through the watcher; StickWriteError says why not."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.settimeout(REPLY_TIMEOUT_S)

    def __call__(self, data: bytes) -> None:
        try:
            self.sock.send(data)
            reply = self.sock.recv(MAX_REQUEST)
        except OSError as exc:
            raise StickWriteError(pulled(exc.strerror or str(exc))) from None
        if not reply:
            raise StickWriteError(pulled("hosted mode has stopped"))
        answer = json.loads(reply)
        if answer.get("ok") is not True:
            raise StickWriteError(str(answer.get("error")))
