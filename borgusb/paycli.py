"""`borgusb pay balance|send|history`: Borg Shells on the peerPaysCell network
(and ``lock|claim|refund|lock-status``, hash-time locks: `paylocks`).

    borgusb pay balance [ACCOUNT] [--json]        the quorum-agreed balance (default: your wallet's account)
    borgusb pay send --to ACCOUNT AMOUNT [--json] pay AMOUNT Shells ("1.5", exact) from your wallet
    borgusb pay history [ACCOUNT] [--json]        recent payments in and out
    borgusb pay credit [AMOUNT] [--for stream]    pay the node ahead for its agents' thinking or its streams
    borgusb pay earn content [--day D]            claim the reserve's reward for reads of your public media

An account is an identity public key (66 hex digits) or its Doge address
(D...); ``borgusb wallet show`` prints both. An address is a hash of the key,
so the node looks up the key behind it among the keys the network has seen
(`ledger.directory`: the answer is checked against the address here);
an address no node has seen is ``unknown account``: ask the payee for their key.

The wallet signs: ``--keystore PATH [--passphrase-file F]`` (or ``--key-file``
for scripts). The command talks to the peerPaysCell named by ``--node IP``
(default $BORGUSB_NODE, else the first live node of a local cluster, else
this machine's own node), which offers the transaction to the account's holders and returns
once a quorum confirmed it.

A transaction that did not gather a quorum (holders down) is kept in
``~/.cache/borgusb/pay/`` and sent again, the same bytes, before anything new:
signing a second transaction for the same sequence number could split the
holders' votes and lock the account (docs/ledger.md, liveness). With none kept
there (another computer, a cleared cache), the one the account's holders voted
for is fetched from them and sent again first.

Exit codes (`clitools.EXIT_CODES`, the same for every command): 0 done; 1 refused
by the network (the reason word is printed: ``insufficient_funds``,
``conflicting_spend``, ``stale`` ...) or failed; 2 bad input (usage, bad amount,
unknown account); 3 no node reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import dna, paycredit, payearn, paylocks
from .clitools import (
    EXIT_CODES,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    add_wallet_options,
    existing_keystore,
    find_node,
    port_number,
)
from .clitools import run as run_command
from .clock import SystemClock
from .envelope import Verifier
from .keys import SigningKey
from .net.peer import PeerClient, PeerRejected

DNA = dna.get("peerPaysCell")
PENDING_DIR = Path(os.environ.get("BORGUSB_PAY_DIR", Path.home() / ".cache" / "borgusb" / "pay"))

# what each refusal means to the person who typed the command
EXPLAIN = {
    "insufficient_funds": "insufficient funds",
    "conflicting_spend": "conflicting spend: this account already spent that sequence number on another transaction",
    "stale": "stale transaction: signed too long ago, or this computer's clock is behind the network's",
    "future_dated": "transaction dated in the future: this computer's clock is ahead of the network's",
    "bad_amount": "bad amount",
    "bad_signature": "the transaction's signature does not verify",
    "gap": "the holders lack an earlier transaction of this account; try again",
    "bad_prev": "the holders have another previous transaction for this account; try again",
    "disagreement": "the account's holders do not agree on it right now (a payment in flight?); try again",
    "no_quorum": "too few of the account's holders answered; the transaction is kept and sent again next time",
    "too_few_members": "the ledger network has fewer nodes than an account needs holders",
    "view_mismatch": "the ledger's nodes are changing; try again",
    "unverified_work": "the reserve's holders did not verify the work this reward claims",
    "already_paid": "that work is already paid",
}


async def account_arg(text: str | None, key: SigningKey | None, pay: Any) -> str:
    """The account a command is about: the one named (a key, or an address the network knows the key
    behind: `PayClient.whois`), else the wallet's."""
    from .ledger import is_account
    from .ledger.directory import address_hash

    if text is None:
        if key is None:
            raise CLIError("name an ACCOUNT, or give your wallet with --keystore (or --key-file)", EXIT_USAGE)
        return key.public_key_hex
    t = text.strip()
    if is_account(t.lower()):
        return t.lower()
    if t[:1] in ("D", "A", "9") and len(t) in range(26, 36):
        try:
            h160 = address_hash(t)
        except ValueError as exc:
            raise CLIError(f"unknown account {t}: {exc}", EXIT_USAGE) from None
        try:
            return str(await pay.whois(h160))
        except PeerRejected as exc:
            if exc.reason != "unknown_account":
                raise
            raise CLIError(
                f"unknown account {t}: no node of this network has seen the key behind this address; "
                "ask for the account's public key (66 hex digits, 'borgusb wallet show' prints it)",
                EXIT_USAGE,
            ) from None
    raise CLIError(
        f"unknown account {t[:70]!r}: an account is a public key (66 hex digits) or a Doge address", EXIT_USAGE
    )


def load_key(args: argparse.Namespace, required: bool) -> SigningKey | None:
    if not args.keystore and not args.key_file:
        if required:
            raise CLIError("pay send signs with your wallet: give --keystore PATH (or --key-file)", EXIT_USAGE)
        return None
    from .storecli import load_key as store_load_key

    return store_load_key(args)


def refusal(exc: PeerRejected) -> CLIError:
    what = EXPLAIN.get(exc.reason, exc.reason)
    return CLIError(f"{what} ({exc.reason}){': ' + exc.detail if exc.detail else ''}")


def _pending_path(account: str) -> Path:
    return PENDING_DIR / f"{account}.json"


def _print(args: argparse.Namespace, doc: Any, text: str) -> None:
    print(json.dumps(doc) if args.json else text)


async def _run(args: argparse.Namespace) -> int:
    from .cells.peerpays.client import PayClient
    from .ledger import format_shells, parse_shells, sign_transfer
    from .ledger.errors import BadAmount, LedgerError

    key = load_key(args, required=args.cmd in ("send", paycredit.COMMAND, payearn.COMMAND, *paylocks.SIGNS))
    clock = SystemClock()
    async with PeerClient(key or SigningKey.generate(), clock, Verifier(clock), timeout_s=args.timeout) as peers:
        pay = PayClient(peers, args.node, port=args.port or DNA.recp_port)
        try:
            if args.cmd in paylocks.COMMANDS:
                return await paylocks.run(
                    args, pay, key, clock.now_ms(), _submit_chain, lambda text: account_arg(text, None, pay)
                )
            if args.cmd == paycredit.COMMAND:
                return await paycredit.run(args, peers, pay, key, clock.now_ms(), PENDING_DIR, _submit_chain)
            if args.cmd == payearn.COMMAND:
                return await payearn.run(args, peers, pay, key, clock.now_ms())
            if args.cmd == "balance":
                account = await account_arg(args.account, key, pay)
                doc = await pay.balance(account)
                text = f"{format_shells(doc['balance'])} Shells (account {account[:16]}…, transaction {doc['seq']})"
                _print(args, dict(doc, shells=format_shells(doc["balance"])), text)
                return EXIT_OK
            if args.cmd == "history":
                account = await account_arg(args.account, key, pay)
                doc = await pay.history(account)
                if args.json:
                    print(json.dumps(doc))
                    return EXIT_OK
                if doc.get("balance") is not None:
                    print(f"balance {format_shells(doc['balance'])} Shells")
                for h in doc.get("history", []):
                    if h.get("kind") == "skip":  # docs/ledger.md, "Skipping a split seq"
                        print(f"seq {h['seq']}  skipped: its votes were split, nothing was paid  {h['id'][:16]}")
                        continue
                    sign = "-" if h["dir"] == "out" else "+"
                    state = "" if h["confirmed"] else " (unconfirmed)"
                    peer = ("to " if h["dir"] == "out" else "from ") + h["peer"]
                    print(f"{h['ts']}  {sign}{format_shells(h['amount'])}  {peer}  {h['id'][:16]}{state}")
                if not doc.get("history"):
                    print("no transactions")
                return EXIT_OK
            # send
            assert key is not None
            try:
                amount = parse_shells(args.amount)
            except BadAmount as exc:
                raise CLIError(f"bad amount ({exc.problem}): {exc.detail}", EXIT_USAGE) from None
            to = await account_arg(args.to, None, pay)
            if to == key.public_key_hex:
                raise CLIError("an account does not pay itself", EXIT_USAGE)
            try:
                done = await _submit_chain(
                    pay,
                    key,
                    lambda seq, prev: sign_transfer(key, seq=seq, prev=prev, to=to, amount=amount, ts=clock.now_ms()),
                )
            except LedgerError as exc:
                raise CLIError(f"{EXPLAIN.get(exc.reason, exc.reason)}: {exc}", EXIT_USAGE) from None
            done.pop("cert", None)
            text = (
                f"sent {format_shells(amount)} Shells to {to[:16]}…: transaction {done['id']} "
                f"confirmed by {len(done['certificate']['signers'])} of {done['certificate']['holders']} holders"
            )
            _print(args, dict(done, shells=format_shells(amount)), text)
            return EXIT_OK
        except PeerRejected as exc:
            raise refusal(exc) from None


async def _submit_chain(pay: Any, key: SigningKey, sign: Callable[[int, str], Any]) -> dict[str, Any]:
    """Sign the account's next transaction (``sign(seq, prev)``) and have it confirmed. One that gathers
    no quorum is kept, and sent again, the same bytes, before anything new is signed."""
    head = await _holders_unsettled(pay, key.public_key_hex)
    await _resend_pending(pay, key.public_key_hex)
    if head is None:  # a transaction was kept or found (the head moves when it confirms), or none was asked
        head = await pay.balance(key.public_key_hex)
    tx = sign(head["seq"] + 1, head["head"])
    path = _pending_path(key.public_key_hex)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tx.to_dict()))
    try:
        done: dict[str, Any] = await pay.submit(tx)
    except PeerRejected as exc:
        if exc.reason != "no_quorum":  # refused for good: this transaction will never confirm
            path.unlink(missing_ok=True)
        raise
    path.unlink(missing_ok=True)
    return done


async def _holders_unsettled(pay: Any, account: str) -> dict[str, Any] | None:
    """With no kept transaction here (another computer, a cleared cache), the one the account's holders
    voted for and nobody confirmed yet becomes the kept one, sent again first (peerpays/unsettled.py).
    Returns the agreed head when there is none (what the next transaction follows), else None."""
    path = _pending_path(account)
    if path.exists():
        return None
    try:
        tx, head = await pay.unsettled_tx(account)
    except PeerRejected:  # a disagreement or an older node: the balance read next says what is wrong
        return None
    if tx is None:
        return head
    print(f"borgusb pay: your holders have an earlier transaction {tx.id[:16]} (seq {tx.seq})", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tx.to_dict()))
    return None


async def _resend_pending(pay: Any, account: str) -> None:
    """A transaction an earlier `pay send` could not get confirmed: the same bytes again, first."""
    path = _pending_path(account)
    try:
        tx = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    try:
        done = await pay.submit(tx)
        print(f"borgusb pay: an earlier transaction {done.get('id', '')[:16]} is now confirmed", file=sys.stderr)
        if paycredit.keep(PENDING_DIR, done) is not None:
            print("borgusb pay: it bought credit at a node: `borgusb pay credit` hands it over", file=sys.stderr)
    except PeerRejected as exc:
        if exc.reason == "no_quorum":
            raise CLIError(
                f"an earlier transaction is still waiting for its holders ({exc.detail}); try again"
            ) from None
        print(f"borgusb pay: an earlier transaction was refused ({exc.reason}); dropped", file=sys.stderr)
    path.unlink(missing_ok=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="borgusb pay",
        description=(
            "Borg Shells: balance, send, history; credit for a node's thinking time or streams; "
            "earn: claim a reward (content); hash-time locks: lock, claim, refund, lock-status"
        ),
        epilog=EXIT_CODES,
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    bal = sub.add_parser("balance", help="the quorum-agreed balance of an account (default: your wallet's)")
    bal.add_argument("account", nargs="?", help="the account's public key (66 hex digits) or Doge address")
    send = sub.add_parser("send", help="pay Shells from your wallet's account")
    send.add_argument(
        "--to", required=True, metavar="ACCOUNT", help="the payee's account: public key or Doge address (D...)"
    )
    send.add_argument("amount", help='Shells, e.g. "1.5" (at most 8 decimal places)')
    hist = sub.add_parser("history", help="recent payments in and out of an account (default: your wallet's)")
    hist.add_argument("account", nargs="?", help="the account's public key (66 hex digits) or Doge address")
    for q in (bal, send, hist, paycredit.add_parser(sub), payearn.add_parser(sub), *paylocks.add_parsers(sub)):
        add_wallet_options(q, DNA.name, "your wallet keystore (signs the transaction)", "seconds to wait for the node")
        q.add_argument("--port", type=port_number(), help=argparse.SUPPRESS)
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        if args.keystore:
            existing_keystore(args.keystore)  # said before a node is looked for or a passphrase asked
        if args.node is None:
            args.node = find_node(DNA.name, args.port or DNA.recp_port)

        return asyncio.run(_run(args))

    return run_command(f"borgusb pay {args.cmd}", DNA.name, body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
