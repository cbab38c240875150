"""`borgusb pay credit [AMOUNT]`: pay a node ahead for its agents' thinking time (the ``compute`` price).

Without AMOUNT it prints what the node's agent cell says of your thinking time there: the free
seconds left today and your credit. With AMOUNT it pays the node's account that many Shells (a
transfer whose ref names compute credit, `ledger.credit.credit_ref`), then hands the agent cell the
payment's certificate, which the node's ledger checks before crediting it once. A certificate the
agent cell did not take (it did not answer; or the payment was confirmed only when an earlier
command sent it again) is kept in ``~/.cache/borgusb/pay/`` and handed over the next time this
command runs against that node (only to the key it paid), so a payment is never lost between the
two steps; a week after its signing no node takes it any more, and it is dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .clitools import EXIT_OK, EXIT_USAGE, CLIError
from .keys import SigningKey
from .ledger.credit import FINAL_REFUSALS, PRESENT_WINDOW_MS, credit_ref
from .net.peer import PeerError, PeerRejected

COMMAND = "credit"
REFS = frozenset({credit_ref("compute")})  # the payments a selling cell takes a certificate for


def add_parser(sub: Any) -> argparse.ArgumentParser:
    credit = sub.add_parser(
        COMMAND, help="pay the node ahead for its agents' thinking time; without AMOUNT, show what is left"
    )
    credit.add_argument("amount", nargs="?", help='Shells, e.g. "0.5" (at 0.001 Shell per second of thinking)')
    return credit


def keep(pending: Path, done: dict[str, Any]) -> Path | None:
    """Keep a confirmed payment's certificate when it buys credit (``pay send`` resending one too)."""
    cert = done.get("cert")
    tx = cert.get("tx") if isinstance(cert, dict) else None
    if not isinstance(tx, dict) or tx.get("ref") not in REFS:
        return None
    path = pending / f"credit-{tx.get('account')}-{done.get('id')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cert))
    return path


def _kept(pending: Path, account: str, payee: str, now_ms: int) -> list[Path]:
    """The kept certificates of `account` that pay `payee`; those no node takes any more are dropped."""
    out = []
    for path in sorted(pending.glob(f"credit-{account}-*.json")):
        try:
            tx = json.loads(path.read_text())["tx"]
            to, ts = tx["to"], int(tx["ts"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if ts < now_ms - PRESENT_WINDOW_MS:
            print(f"borgusb pay: a kept payment to {to[:16]}… is over a week old; dropped", file=sys.stderr)
            path.unlink(missing_ok=True)
        elif to == payee:
            out.append(path)
    return out


async def run(
    args: argparse.Namespace,
    peers: Any,
    pay: Any,
    key: SigningKey | None,
    now_ms: int,
    pending: Path,
    submit_chain: Callable[..., Awaitable[dict[str, Any]]],
) -> int:
    from .cells.agents.client import AgentClient
    from .ledger import format_shells, parse_shells, sign_transfer
    from .ledger.errors import BadAmount

    if key is None:
        raise CLIError("pay credit speaks for your wallet: give --keystore PATH (or --key-file)", EXIT_USAGE)
    amount = None
    if args.amount is not None:
        try:
            amount = parse_shells(args.amount)
        except BadAmount as exc:
            raise CLIError(f"bad amount ({exc.problem}): {exc.detail}", EXIT_USAGE) from None
    usage = await _agent(AgentClient(peers, args.node).usage())
    to, ref = usage.get("payee"), usage.get("ref")
    if not isinstance(to, str) or ref not in REFS:
        raise CLIError("the agent cell did not say which account to pay")
    cell = AgentClient(peers, args.node, pubkey=to)  # only the paid key's answer counts
    for path in _kept(pending, key.public_key_hex, to, now_ms):
        usage = await _hand_over(cell, path) or usage
    if amount is not None:

        def sign(seq: int, prev: str) -> Any:
            return sign_transfer(key, seq=seq, prev=prev, to=to, amount=amount, ts=now_ms, ref=ref)

        fresh = keep(pending, await submit_chain(pay, key, sign))  # the ledger's refusals are paycli's to word
        if fresh is not None:
            usage = await _hand_over(cell, fresh) or usage

    def shells(field: str) -> str:
        return format_shells(int(usage.get(field, 0)))

    left_s = int(usage.get("free_left", 0)) // 1000
    text = (
        "this node thinks for this key free (its own key)"
        if usage.get("exempt")
        else f"thinking time here: {left_s} s free left today; credit {shells('balance')} Shells "
        f"(paid {shells('paid')}, charged {shells('charged')})"
    )
    print(json.dumps(usage) if args.json else text)
    return EXIT_OK


async def _agent(call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    try:
        return await call
    except PeerRejected as exc:
        raise CLIError(f"the agent cell refused: {exc.reason}{': ' + exc.detail if exc.detail else ''}") from None


async def _hand_over(cell: Any, path: Path) -> dict[str, Any] | None:
    """Give the agent cell a kept certificate: its usage once taken (the file goes), else None. A refusal
    for good drops the file; any other (or silence) keeps it for the next run, said on stderr."""
    try:
        done: dict[str, Any] = await cell.credit(json.loads(path.read_text()))
    except PeerRejected as exc:
        if exc.reason in FINAL_REFUSALS:
            path.unlink(missing_ok=True)
            if exc.reason != "again":
                print(f"borgusb pay: a kept payment was not credited ({exc.reason}); dropped", file=sys.stderr)
            return None
        print(f"borgusb pay: paid, not credited yet ({exc.reason}); kept, sent again next time", file=sys.stderr)
        return None
    except PeerError as exc:
        print(f"borgusb pay: paid, the agent cell did not take it yet ({exc}); kept, run this again", file=sys.stderr)
        return None
    path.unlink(missing_ok=True)
    usage = done.get("usage")
    return usage if isinstance(usage, dict) else None
