"""Signed documents: a JSON object, a domain, and its author's signature over both.

Every document a person, an agent or a node signs outside an envelope (orders, mail, directory
entries, stream maps, memories, agent messages and claims, work records) is signed the same way:
the canonical bytes of the body without ``sig`` plus ``"d": domain``. The domain keeps a signature
made for one kind of document from passing as another; an id is the SHA-256 of the same bytes, so
it names exactly what was signed.

`check_doc` checks a whole document. A module with its own field rules and error classes (mail,
files, ledger, exchange, memory, stream maps) checks its fields itself and shares the parts:
`is_sig_hex` for the ``sig`` field, `signing_bytes` and `signed_by` for the signature.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from . import canonical
from .keys import SigningKey, is_public_key_hex, verify_signature

_SIG_HEX = re.compile(r"(?:[0-9a-f]{2}){8,73}")


class SignedDocError(ValueError):
    """A document that does not check out; ``reason`` is one word (``malformed``, ``bad_signature``)."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


def is_sig_hex(value: Any) -> TypeGuard[str]:
    """A DER ECDSA signature (8 to 73 bytes) in lowercase hex: the one spelling a signed document's
    ``sig`` has, so a stored document's bytes cannot be varied by spelling its signature otherwise."""
    return isinstance(value, str) and _SIG_HEX.fullmatch(value) is not None


def signed_by(signer: Any, sig: Any, message: bytes) -> bool:
    """Whether `sig` (hex) is `signer`'s signature of `message`; False for a signer or a sig that
    does not parse, so a caller that checked neither still only refuses."""
    try:
        return verify_signature(signer, bytes.fromhex(sig), message)
    except (ValueError, TypeError):
        return False


def signing_bytes(body: Mapping[str, Any], domain: str) -> bytes:
    """What a signature covers and an id hashes: the body without ``sig``, plus the domain."""
    doc = {k: v for k, v in body.items() if k != "sig"}
    doc["d"] = domain
    return canonical.encode_unchecked(doc)


def doc_id(doc: Mapping[str, Any], domain: str) -> str:
    """The document's id: SHA-256 (hex) of its signing bytes."""
    return hashlib.sha256(signing_bytes(doc, domain)).hexdigest()


def sign_doc(key: SigningKey, body: Mapping[str, Any], domain: str) -> dict[str, Any]:
    """`body` with ``sig``: `key`'s signature over its signing bytes."""
    return {**body, "sig": key.sign(signing_bytes(body, domain)).hex()}


def check_doc(doc: Any, fields: set[str], signer_field: str, domain: str) -> dict[str, Any]:
    """`doc` if it has exactly `fields` and ``sig``, and ``doc[signer_field]`` signed it for `domain`."""
    if not isinstance(doc, dict) or doc.keys() != fields | {"sig"}:
        raise SignedDocError("malformed", f"the document has exactly {sorted(fields | {'sig'})}")
    signer, sig = doc[signer_field], doc["sig"]
    if not is_public_key_hex(signer) or not is_sig_hex(sig):
        raise SignedDocError("malformed", f"{signer_field} is a public key and sig is a DER signature in lowercase hex")
    try:
        signed = signing_bytes(doc, domain)
    except (ValueError, TypeError) as exc:  # a float or NaN the parser let through, say
        raise SignedDocError("malformed", str(exc)) from None
    if not verify_signature(signer, bytes.fromhex(sig), signed):
        raise SignedDocError("bad_signature", f"not signed by its {signer_field}")
    return doc
