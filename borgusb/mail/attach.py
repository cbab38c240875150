"""Attachments: a file sealed to the recipient and stored as shards; the message lists its object id.

The sealed plaintext is ``len(name)`` (2 bytes, big-endian) || name (UTF-8) || the file's bytes, so
the name is private too. The seal's context is the message's (`message.seal_context`) plus
``|attachment``: an attachment lifted into another message (another sender, time or thread)
does not open. Holders of the shards see ciphertext only.
"""

from __future__ import annotations

from .. import seal
from ..keys import SigningKey
from .errors import Malformed, TooLarge, Undecryptable
from .message import seal_context

MAX_ATTACHMENT = 32 * 1024 * 1024
MAX_NAME = 255


def _context(sender: str, ts: int, re_id: str) -> bytes:
    return seal_context(sender, ts, re_id) + b"|attachment"


def safe_name(name: str) -> str:
    """A file name to save under: no directories, no hidden or empty names, printable."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).lstrip(".").strip()
    return base[:MAX_NAME] or "attachment"


def seal_attachment(to: bytes, sender: str, ts: int, re_id: str, name: str, data: bytes) -> bytes:
    """The box stored as shards for one attachment of a message from `sender` at `ts`."""
    if len(data) > MAX_ATTACHMENT:
        raise TooLarge(f"an attachment is at most {MAX_ATTACHMENT} bytes")
    raw = safe_name(name).encode()[:MAX_NAME]
    plain = len(raw).to_bytes(2, "big") + raw + data
    return seal.seal(to, plain, _context(sender, ts, re_id), MAX_ATTACHMENT + 2 + MAX_NAME)


def open_attachment(key: SigningKey, sender: str, ts: int, re_id: str, box: bytes) -> tuple[str, bytes]:
    """(safe file name, bytes) of an attachment sealed to `key` for that message."""
    try:
        plain = seal.unseal(key, box, _context(sender, ts, re_id), MAX_ATTACHMENT + 2 + MAX_NAME)
    except seal.SealError as exc:
        raise Undecryptable(str(exc)) from None
    n = int.from_bytes(plain[:2], "big")
    if len(plain) < 2 + n or n > MAX_NAME:
        raise Malformed("an attachment starts with its name")
    return safe_name(plain[2 : 2 + n].decode("utf-8", "replace")), plain[2 + n :]
