"""Content keys wrapped to identity keys with `borgusb.seal`: how a private folder's key reaches
its owner on any machine (nothing but the keystore) and each key it is shared with.

A wrapped key opens only under its recipient's identity key and only for its purpose: the
context names the folder (or file object) it belongs to, so a key wrapped for one folder cannot
be passed off as another's.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..keys import SigningKey
from ..seal import SealError, seal, unseal
from .errors import NotReader, Tampered
from .manifest import Folder

KEY_BYTES = 32


def _context(kind: str, ident: str) -> bytes:
    return f"borgusb.files.{kind}:{ident}".encode()


def wrap(recipient_hex: str, key: bytes, kind: str, ident: str) -> str:
    """`key` sealed to `recipient_hex` for the `kind` (``folder`` or ``file``) named `ident`, in hex."""
    return seal(bytes.fromhex(recipient_hex), key, _context(kind, ident)).hex()


def unwrap(me: SigningKey, wrapped_hex: str, kind: str, ident: str) -> bytes:
    try:
        key = unseal(me, bytes.fromhex(wrapped_hex), _context(kind, ident), max_plaintext=KEY_BYTES)
    except (SealError, ValueError):
        raise Tampered(f"a wrapped {kind} key that does not open under this identity key") from None
    if len(key) != KEY_BYTES:
        raise Tampered(f"a wrapped {kind} key that is not 32 bytes")
    return key


def readers_for(owner_hex: str, others: Iterable[str], content_key: bytes, folder_id: str) -> dict[str, str]:
    """The ``readers`` member of a private folder version: its key wrapped to the owner and to each
    key it is shared with (leave one out to revoke it from this version on)."""
    return {k: wrap(k, content_key, "folder", folder_id) for k in {owner_hex, *others}}


def folder_key(me: SigningKey, folder: Folder) -> bytes | None:
    """The version key of `folder` for `me` (None for a public folder); `NotReader` when `me` is
    not among its readers."""
    if folder.public:
        return None
    wrapped = folder.readers.get(me.public_key_hex)
    if wrapped is None:
        raise NotReader("this key is not among the folder's readers")
    return unwrap(me, wrapped, "folder", folder.folder)
