"""Reading a block's transactions for watched outputs and their spends (no I/O).

The bridge asks dogecoind for each transaction's raw bytes and reads them
itself (python-bitcoinlib), checking that the bytes hash to the txid asked
for, so a node's decoded view is never trusted for amounts or scripts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bitcoin.core import CTransaction, b2lx, x

MAX_TX_BYTES = 1_000_000  # a standard transaction is at most 100 kB; a block at most 1 MB


class ScanError(ValueError):
    """Raw bytes that are not the transaction asked for."""


@dataclass(frozen=True, slots=True)
class Output:
    """An output paying a watched script."""

    txid: str
    vout: int
    address: str
    amount: int
    coinbase: bool


@dataclass(frozen=True, slots=True)
class Spend:
    """An input spending some earlier output."""

    txid: str
    vout: int
    spender: str


def read_tx(raw_hex: str, txid: str) -> CTransaction:
    """The transaction of these bytes, which must hash to txid."""
    if len(raw_hex) > 2 * MAX_TX_BYTES:
        raise ScanError("transaction too large")
    try:
        tx = CTransaction.deserialize(x(raw_hex))
    except Exception as exc:  # python-bitcoinlib raises several types for bad bytes
        raise ScanError(f"not a transaction: {exc}") from None
    if b2lx(tx.GetTxid()) != txid:
        raise ScanError(f"the bytes given for {txid} are another transaction")
    return tx


def scan_tx(tx: CTransaction, txid: str, watched: Mapping[bytes, str]) -> tuple[list[Output], list[Spend]]:
    """Outputs paying a watched script (script -> address), and every outpoint the transaction spends."""
    outputs = [
        Output(txid, n, watched[bytes(out.scriptPubKey)], int(out.nValue), tx.is_coinbase())
        for n, out in enumerate(tx.vout)
        if bytes(out.scriptPubKey) in watched
    ]
    spends = [] if tx.is_coinbase() else [Spend(b2lx(i.prevout.hash), i.prevout.n, txid) for i in tx.vin]
    return outputs, spends
