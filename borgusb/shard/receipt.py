"""A reader's receipt for shards a holder served it: what the ``serve`` reward is paid on.

Signed by the reader's key once its DStream `Receiver` checked the bytes against the owner-signed
manifest, handed to the holder (``shard.receipt``), and listed by the holder in its serve record
(`borgusb.ledger.servework`), where every reserve holder checks the signature again. Fields:
``reader`` (the signer), ``holder``, ``shards`` ([sha256, size] pairs, 1 to `MAX_RECEIPT_SHARDS`, in
hash order), ``ts`` (the reader's network time). Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from .. import canonical
from ..keys import SigningKey, is_public_key_hex
from ..signed import SignedDocError, check_doc, doc_id, sign_doc
from .model import MAX_SHARD

DOMAIN = "borgusb.shard.receipt"
MAX_RECEIPT_SHARDS = 16  # a receipt covers up to 16 shards of one fetch from one holder
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = {"reader", "holder", "shards", "ts"}


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= canonical.MAX_SAFE_INT


def sign_receipt(reader: SigningKey, holder: str, shards: dict[str, int], ts: int) -> dict[str, Any]:
    """`reader`'s receipt for `shards` ({sha256: size}, 1 to `MAX_RECEIPT_SHARDS`) `holder` served it."""
    body = {"reader": reader.public_key_hex, "holder": holder, "shards": [[h, n] for h, n in sorted(shards.items())]}
    return check_receipt(sign_doc(reader, {**body, "ts": ts}, DOMAIN))


def check_receipt(doc: Any) -> dict[str, Any]:
    """A receipt with its fields and its reader's signature checked (`SignedDocError` if not)."""
    d = check_doc(doc, _FIELDS, "reader", DOMAIN)
    if not is_public_key_hex(d["holder"]) or not _int(d["ts"]):
        raise SignedDocError("malformed", "holder is a public key and ts a time")
    listed = d["shards"]
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_RECEIPT_SHARDS:
        raise SignedDocError("malformed", f"a receipt lists 1 to {MAX_RECEIPT_SHARDS} shards")
    last = ""
    for s in listed:
        if not (isinstance(s, list) and len(s) == 2 and isinstance(s[0], str) and _HEX64.fullmatch(s[0])):
            raise SignedDocError("malformed", "a shard is [sha256, size]")
        if not (_int(s[1]) and 1 <= s[1] <= MAX_SHARD) or s[0] <= last:
            raise SignedDocError("malformed", f"sizes are 1..{MAX_SHARD}; shards listed once, in hash order")
        last = s[0]
    return d


def receipt_id(doc: dict[str, Any]) -> str:
    return doc_id(doc, DOMAIN)
