"""Makes tests/vectors/seal/seal.json and seal_invalid.json once (borgusb/seal.py, version 1).

Fixed recipient and ephemeral keys (SHA-256 of a label) and fixed nonces. Run
`python -m tests.vectors.generate_seal` only when borgusb.seal.VERSION changes;
tests/unit/test_seal.py checks every valid case independently (coincurve point
multiplication, HKDF from hmac, AES-GCM from pycryptodome).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from borgusb import seal
from borgusb.keys import SigningKey

OUT = Path(__file__).parent / "seal"
SOURCE = (
    "BorgUSB custom vectors: borgusb/seal.py _seal_with() with fixed keys (SHA-256 of a label) "
    "and fixed nonces; every valid case was opened by tests/unit/test_seal.py's independent "
    "check (coincurve point multiplication + hashlib SHA-256, HKDF-SHA256 from hmac, AES-GCM "
    "from pycryptodome)"
)


def secret(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def main() -> None:
    recipient = SigningKey(secret("seal recipient"))
    valid = []
    rows = [
        ("empty", b"", b"mail/body"),
        ("hello", b"hello, world", b"mail/body"),
        ("subject", "Ciao \u00e8 un test".encode(), b"mail/subject"),
        ("no context", b"x" * 100, b""),
        ("file", bytes(range(256)) * 4, b"ftree/file"),
    ]
    for i, (name, pt, ctx) in enumerate(rows):
        eph = secret(f"seal ephemeral {i}")
        nonce = hashlib.sha256(f"seal nonce {i}".encode()).digest()[:12]
        box = seal._seal_with(recipient.public_key, pt, ctx, eph, nonce)
        valid.append(
            {
                "name": name,
                "recipient_secret": recipient.secret_bytes().hex(),
                "recipient_pubkey": recipient.public_key.hex(),
                "ephemeral_secret": eph.hex(),
                "nonce": nonce.hex(),
                "context": ctx.hex(),
                "plaintext": pt.hex(),
                "sealed": box.hex(),
            }
        )
    base = bytes.fromhex(valid[1]["sealed"])
    other = SigningKey(secret("seal other"))
    invalid = [
        ("wrong key", other.secret_bytes().hex(), base, b"mail/body", "undecryptable"),
        ("wrong context", None, base, b"mail/subject", "undecryptable"),
        ("tampered ciphertext", None, base[:-20] + bytes([base[-20] ^ 1]) + base[-19:], b"mail/body", "undecryptable"),
        ("tampered tag", None, base[:-1] + bytes([base[-1] ^ 0x80]), b"mail/body", "undecryptable"),
        ("tampered nonce", None, base[:40] + bytes([base[40] ^ 1]) + base[41:], b"mail/body", "undecryptable"),
        ("truncated", None, base[: seal.OVERHEAD - 1], b"mail/body", "malformed"),
        ("empty", None, b"", b"mail/body", "malformed"),
        ("version 2", None, b"\x02" + base[1:], b"mail/body", "bad_version"),
        ("ephemeral not a point", None, base[:1] + b"\x02" + b"\xff" * 32 + base[34:], b"mail/body", "malformed"),
        ("ephemeral uncompressed prefix", None, base[:1] + b"\x04" + base[2:], b"mail/body", "malformed"),
    ]
    cases = [
        {
            "name": n,
            "recipient_secret": k or recipient.secret_bytes().hex(),
            "context": c.hex(),
            "sealed": b.hex(),
            "reason": r,
        }
        for n, k, b, c, r in invalid
    ]
    OUT.mkdir(exist_ok=True)
    for fname, rows_out in (("seal.json", valid), ("seal_invalid.json", cases)):
        doc = {"source": SOURCE, "version": seal.VERSION, "cases": rows_out}
        (OUT / fname).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
