"""What the recipient signs to read or change their inbox: the payload's `who` means nothing unless
that key signed.

Wire form, canonical JSON::

    {"v": 1, "op": "list" | "read" | "rm", "who": "03…recipient", "ids": ["<message id>", …],
     "ts": 1764000000000, "n": "<16 hex: a nonce>", "sig": "3044…"}

``sig``: DER ECDSA by ``who`` over every other member plus ``"d": "borgusb.mail.request"``. A holder
takes a request within `MAX_AGE_MS` of its network time; a replayed one can only repeat what the
recipient already asked (list again, mark again, delete again), so holders need no nonce memory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from ..canonical import MAX_SAFE_INT
from ..keys import SigningKey
from ..ledger.accounts import is_account
from ..signed import is_sig_hex, signed_by, signing_bytes
from .errors import BadSignature, FutureDated, Malformed, Stale

VERSION = 1
DOMAIN = "borgusb.mail.request"
OPS = ("list", "read", "rm")
MAX_IDS = 256
MAX_AGE_MS = 5 * 60_000
MAX_FUTURE_MS = 30_000
FIELDS = frozenset(("v", "op", "who", "ids", "ts", "n", "sig"))
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NONCE = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True, slots=True)
class Request:
    op: str
    who: str
    ids: tuple[str, ...]
    ts: int
    doc: dict[str, Any]  # the signed document, forwarded as is to every holder


def sign_request(key: SigningKey, op: str, ids: tuple[str, ...] | list[str], ts: int) -> dict[str, Any]:
    """A request by `key` about its own inbox."""
    body = {"v": VERSION, "op": op, "who": key.public_key_hex, "ids": list(ids), "ts": ts, "n": os.urandom(8).hex()}
    doc = dict(body, sig=key.sign(signing_bytes(body, DOMAIN)).hex())
    _check_fields(doc)
    return doc


def _check_fields(doc: Any) -> None:
    if not isinstance(doc, dict) or doc.keys() != FIELDS:
        raise Malformed(f"a mail request has exactly {', '.join(sorted(FIELDS))}")
    if doc["v"] != VERSION or isinstance(doc["v"], bool):
        raise Malformed(f"unsupported request version (this node reads {VERSION})")
    if doc["op"] not in OPS:
        raise Malformed(f"op is one of {', '.join(OPS)}")
    if not is_account(doc["who"]):
        raise Malformed("who is a compressed public key in lowercase hex")
    ids, ts = doc["ids"], doc["ts"]
    if (
        not isinstance(ids, list)
        or len(ids) > MAX_IDS
        or any(not isinstance(i, str) or not _HEX64.fullmatch(i) for i in ids)
    ):
        raise Malformed(f"ids are at most {MAX_IDS} message ids")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= MAX_SAFE_INT:
        raise Malformed("ts is network time in ms")
    if not isinstance(doc["n"], str) or not _NONCE.fullmatch(doc["n"]):
        raise Malformed("n is 8 bytes in lowercase hex")
    if not is_sig_hex(doc["sig"]):
        raise Malformed("sig is a DER signature in lowercase hex")


def check_request(doc: Any, now_ms: int) -> Request:
    """A `Request` signed by its `who`, fresh at `now_ms` (`Malformed`, `Stale`, `FutureDated`, `BadSignature`)."""
    _check_fields(doc)
    if now_ms - doc["ts"] > MAX_AGE_MS:
        raise Stale(f"signed {now_ms - doc['ts']} ms ago (at most {MAX_AGE_MS})")
    if doc["ts"] - now_ms > MAX_FUTURE_MS:
        raise FutureDated(f"dated {doc['ts'] - now_ms} ms ahead (at most {MAX_FUTURE_MS})")
    if not signed_by(doc["who"], doc["sig"], signing_bytes(doc, DOMAIN)):
        raise BadSignature("the request is not signed by the inbox's owner")
    return Request(doc["op"], doc["who"], tuple(doc["ids"]), doc["ts"], dict(doc))
