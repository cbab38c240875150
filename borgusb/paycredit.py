"""`borgusb pay credit [AMOUNT]`: pay a node ahead for its agents' thinking time (the ``compute`` price).

Without AMOUNT it prints what the node's agent cell says of your thinking time there: the free
seconds left today and your credit. With AMOUNT it pays the node's account that many Shells (a
transfer whose ref names compute credit, `ledger.credit.credit_ref`), then hands the agent cell the
payment's certificate, which the node's ledger checks before crediting it once. A certificate the
agent cell could not take (it did not answer) is kept in ``~/.cache/borgusb/pay/`` and handed over
again, before anything new is paid: a payment is never lost between the two steps.
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
from .ledger.credit import FINAL_REFUSALS
from .net.peer import PeerError, PeerRejected

COMMAND = "credit"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    credit = sub.add_parser(
        COMMAND, help="pay the node ahead for its agents' thinking time; without AMOUNT, show what is left"
    )
    credit.add_argument("amount", nargs="?", help='Shells, e.g. "0.5" (at 0.001 Shell per second of thinking)')
    return credit


def _kept(pending: Path, account: str) -> list[Path]:
    return sorted(pending.glob(f"credit-{account}-*.json"))


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
    agents = AgentClient(peers, args.node)
    try:
        for path in _kept(pending, key.public_key_hex):
            await _hand_over(agents, path)
        usage = await agents.usage()
        if args.amount is not None:
            try:
                amount = parse_shells(args.amount)
            except BadAmount as exc:
                raise CLIError(f"bad amount ({exc.problem}): {exc.detail}", EXIT_USAGE) from None
            to, ref = usage.get("payee"), usage.get("ref")
            if not isinstance(to, str) or not isinstance(ref, str):
                raise CLIError("the agent cell did not say which account to pay")

            def sign(seq: int, prev: str) -> Any:
                return sign_transfer(key, seq=seq, prev=prev, to=to, amount=amount, ts=now_ms, ref=ref)

            done = await submit_chain(pay, key, sign)
            path = pending / f"credit-{key.public_key_hex}-{done['id']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(done["cert"]))
            usage = (await _hand_over(agents, path)).get("usage", usage)
    except PeerRejected as exc:
        raise CLIError(f"the agent cell refused: {exc.reason}{': ' + exc.detail if exc.detail else ''}") from None

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


async def _hand_over(agents: Any, path: Path) -> dict[str, Any]:
    """Give the agent cell a kept certificate; the file goes once it is taken or refused for good."""
    try:
        cert = json.loads(path.read_text())
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return {}
    try:
        done: dict[str, Any] = await agents.credit(cert)
    except PeerRejected as exc:
        if exc.reason in FINAL_REFUSALS:
            path.unlink(missing_ok=True)
            print(f"borgusb pay: a kept payment was not credited ({exc.reason}); dropped", file=sys.stderr)
            return {}
        raise
    except PeerError as exc:
        raise CLIError(f"paid, but the agent cell did not take the payment yet ({exc}); run this again") from None
    path.unlink(missing_ok=True)
    return done
