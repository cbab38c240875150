"""Makes tests/vectors/mail/directory.json and directory_invalid.json once (borgusb/mail/directory.py, version 1).

Fixed keys (SHA-256 of a label) and fixed times; ECDSA signatures are deterministic (RFC 6979), so
running it again gives the same files. Run `python -m tests.vectors.generate_directory` only when
borgusb.mail.directory.VERSION changes; tests/unit/test_mail_directory.py checks every valid case
independently (the address from bip-utils, the signature with `cryptography`'s ECDSA over the
signed bytes built with the json module) and every invalid one for its reason.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from borgusb.keys import SigningKey
from borgusb.mail.directory import DOMAIN, VERSION, sign_entry
from borgusb.signed import signing_bytes

OUT = Path(__file__).parent / "mail"
T = 1_764_000_000_000
SOURCE = (
    "BorgUSB custom vectors: borgusb/mail/directory.py sign_entry() with fixed keys (SHA-256 of a label) "
    "and fixed times (RFC 6979 signatures); every valid case was checked by tests/unit/test_mail_directory.py's "
    "independent check (P2PKH address from bip-utils, ECDSA-SHA256 verify from cryptography over "
    "json.dumps(sort_keys, compact, ensure_ascii=False) of the members plus d)"
)


def key(label: str) -> SigningKey:
    return SigningKey(hashlib.sha256(label.encode()).digest())


def resign(doc: dict[str, Any], signer: SigningKey) -> dict[str, Any]:
    body = {k: v for k, v in doc.items() if k != "sig"}
    return dict(body, sig=signer.sign(signing_bytes(body, DOMAIN)).hex())


def main() -> None:
    alice, bob, mallory = key("vector alice"), key("vector bob"), key("vector mallory")
    valid = [
        {"name": "no display name", "entry": sign_entry(alice, T).to_dict()},
        {"name": "a display name", "entry": sign_entry(bob, T + 1, "Bob").to_dict()},
        {"name": "unicode name", "entry": sign_entry(bob, T + 2, "Zoë 李").to_dict()},
    ]
    good = sign_entry(bob, T, "Bob").to_dict()
    claim = dict(sign_entry(mallory, T, "Bob").to_dict(), addr=bob.doge_address)
    invalid = [
        {"name": "another key claims the address", "entry": resign(claim, mallory), "reason": "wrong_address"},
        {"name": "signed by another key", "entry": resign(good, mallory), "reason": "bad_signature"},
        {"name": "name changed after signing", "entry": dict(good, name="Mallory"), "reason": "bad_signature"},
        {"name": "time changed after signing", "entry": dict(good, ts=T + 1), "reason": "bad_signature"},
        {
            "name": "checksum broken",
            "entry": resign(dict(good, addr=good["addr"][:-1] + "x"), bob),
            "reason": "bad_address",
        },
        {
            "name": "name with a control character",
            "entry": resign(dict(good, name="B\nob"), bob),
            "reason": "malformed",
        },
        {"name": "version 2", "entry": resign(dict(good, v=2), bob), "reason": "malformed"},
    ]
    OUT.mkdir(exist_ok=True)
    for name, cases in (("directory.json", valid), ("directory_invalid.json", invalid)):
        doc = {"source": SOURCE, "version": VERSION, "cases": cases}
        (OUT / name).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
