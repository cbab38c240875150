"""`borgusb pay lock|claim|refund|lock-status`: hash-time locks on the Borg Shell ledger (docs/exchange.md).

    borgusb pay lock --to PUBKEY AMOUNT --secret-file F [--expires-in HOURS]   lock Shells for PUBKEY
    borgusb pay lock --to PUBKEY AMOUNT --hash HEX [--expires-in HOURS]        ... under someone else's hash
    borgusb pay claim LOCK --from PAYER (--secret HEX | --secret-file F)        claim a lock made for you
    borgusb pay refund LOCK                                                    take back your expired lock
    borgusb pay lock-status LOCK [--from PAYER]                                open, claimed (and the secret), refunded

``--secret-file``: a new 32-byte secret is drawn and written there (mode 0600) when the file does
not exist, else the hex secret in it is used. A lock is a chain transaction like ``send``: one the
holders did not confirm is sent again, the same bytes, before anything new is signed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .clitools import EXIT_OK, EXIT_USAGE, CLIError
from .keys import SigningKey

COMMANDS = ("lock", "claim", "refund", "lock-status")
SIGNS = ("lock", "claim", "refund")
HOUR_MS = 3_600_000
_HEX = re.compile(r"(?:[0-9a-f]{2})+")

# the chain submit of `paycli`: (pay, key, sign(seq, prev) -> Tx) -> the pay.send reply
Submit = Callable[[Any, SigningKey, Callable[[int, str], Any]], Awaitable[dict[str, Any]]]
# paycli's account resolver: a key, or a Doge address whose key the network knows -> the key
Resolve = Callable[[str], Awaitable[str]]


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """The four commands' parsers (paycli adds the common options)."""
    lock = sub.add_parser("lock", help="lock Shells for a claimant under a hash, refundable after an expiry")
    lock.add_argument(
        "--to", required=True, metavar="ACCOUNT", help="the claimant's account: public key or Doge address (D...)"
    )
    lock.add_argument("amount", help='Shells, e.g. "1.5"')
    lock.add_argument("--hash", metavar="HEX", help="the hash lock (SHA-256 of a secret someone else holds)")
    lock.add_argument("--secret-file", help="the secret's file: drawn and written if missing, else read")
    lock.add_argument("--expires-in", type=float, default=48.0, metavar="HOURS", help="default 48 (at most 168)")
    claim = sub.add_parser("claim", help="claim a lock made for your account, with its secret")
    claim.add_argument("lock", help="the lock's transaction id")
    claim.add_argument("--from", dest="payer", required=True, metavar="PUBKEY", help="the lock's payer")
    claim.add_argument("--secret", metavar="HEX", help="the secret, in hex")
    claim.add_argument("--secret-file", help="a file holding the secret in hex")
    refund = sub.add_parser("refund", help="take back the units of your lock once it expired")
    refund.add_argument("lock", help="the lock's transaction id")
    status = sub.add_parser("lock-status", help="a lock's state as a quorum of its payer's holders says it")
    status.add_argument("lock", help="the lock's transaction id")
    status.add_argument("--from", dest="payer", metavar="PUBKEY", help="the lock's payer (default: your wallet's)")
    return [lock, claim, refund, status]


def _secret(args: argparse.Namespace, create: bool) -> bytes:
    if getattr(args, "secret", None):
        text = args.secret
    elif args.secret_file:
        path = Path(args.secret_file)
        if create and not path.exists():
            secret = os.urandom(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secret.hex() + "\n")
            return secret
        text = path.read_text().strip()
    else:
        raise CLIError("give the secret: --secret HEX or --secret-file F", EXIT_USAGE)
    if not _HEX.fullmatch(text.lower()) or len(text) > 1040:
        raise CLIError("the secret is 1 to 520 bytes in hex", EXIT_USAGE)
    return bytes.fromhex(text)


def _lock_id(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise CLIError("a lock is named by its transaction id (64 hex digits)", EXIT_USAGE)
    return text


async def _lock_tx(pay: Any, payer: str, lock_id: str) -> Any:
    from .ledger import check_tx

    doc = await pay.lock_status(payer, lock_id)
    if doc.get("state") != "open" or not isinstance(doc.get("tx"), dict):
        raise CLIError(f"lock {lock_id[:16]} is {doc.get('state')}, not open")
    return check_tx(doc["tx"])


async def run(
    args: argparse.Namespace, pay: Any, key: SigningKey | None, now_ms: int, submit: Submit, resolve: Resolve
) -> int:
    """One of `COMMANDS`; refusals propagate as `PeerRejected` (paycli words them)."""
    from .ledger import format_shells, hash_lock, parse_shells, sign_claim, sign_lock, sign_refund
    from .ledger.errors import BadAmount, LedgerError

    out: dict[str, Any]
    try:
        if args.cmd == "lock-status":
            payer = args.payer or (key.public_key_hex if key else None)
            if payer is None:
                raise CLIError("whose lock? give --from PUBKEY (or your wallet)", EXIT_USAGE)
            out = await pay.lock_status(payer, _lock_id(args.lock))
            text = f"lock {args.lock[:16]}…: {out['state']}" + (
                f", secret {out['preimage']}" if out["preimage"] else ""
            )
        elif args.cmd == "lock":
            assert key is not None
            amount = parse_shells(args.amount)
            if not 0 < args.expires_in <= 168:
                raise CLIError("--expires-in is more than 0 and at most 168 hours", EXIT_USAGE)
            if args.hash and not re.fullmatch(r"[0-9a-f]{64}", args.hash.lower()):
                raise CLIError("the hash lock is a SHA-256 in hex (64 digits)", EXIT_USAGE)
            to = await resolve(args.to)
            lock_hash = args.hash.lower() if args.hash else hash_lock(_secret(args, create=True))
            expiry = now_ms + int(args.expires_in * HOUR_MS)
            out = await submit(
                pay,
                key,
                lambda seq, prev: sign_lock(
                    key, seq=seq, prev=prev, to=to, amount=amount, hash_lock=lock_hash, expiry=expiry, ts=now_ms
                ),
            )
            out.pop("cert", None)
            out.update(hash=lock_hash, expiry=expiry)
            text = f"locked {format_shells(amount)} Shells for {args.to[:16]}…: lock {out['id']}, expires {expiry}"
        else:
            assert key is not None
            if args.cmd == "claim":
                secret, lock_id = _secret(args, create=False), _lock_id(args.lock)  # bad input before the network
                out = await pay.claim(sign_claim(key, await _lock_tx(pay, args.payer, lock_id), secret))
            else:
                lock = await _lock_tx(pay, key.public_key_hex, _lock_id(args.lock))
                out = await pay.refund(sign_refund(key, lock))
            out.pop("cert", None)
            text = f"{args.cmd}ed {format_shells(out['amount'])} Shells of lock {args.lock[:16]}…"
    except BadAmount as exc:
        raise CLIError(f"bad amount ({exc.problem}): {exc.detail}", EXIT_USAGE) from None
    except LedgerError as exc:
        raise CLIError(f"{exc.reason}: {exc}", EXIT_USAGE) from None
    print(json.dumps(out) if args.json else text)
    return EXIT_OK
