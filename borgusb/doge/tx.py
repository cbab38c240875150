"""A signed P2PKH payment from a key's UTXOs, with change and a fee (integers of koinu).

**Built** by libdogecoin (the Dogecoin Foundation's library): its working
transaction takes the inputs, the outputs and the change (``finalize``
checks inputs = outputs + fee + change). **Checked**: the unsigned bytes are
read back with python-bitcoinlib and must pay exactly the scripts and amounts
asked for, because libdogecoin silently skips an output whose address it does
not recognise. **Signed** per input: python-bitcoinlib computes the legacy
SIGHASH_ALL digest and coincurve (libsecp256k1) signs it. libdogecoin's own
signing path is not used: in the 0.1.4 wheel it aborts the whole process
(``assert sigderlen >= 70``) for the ~1 signature in 300 whose DER encoding is
shorter than 70 bytes.

libdogecoin picks the network of an output by its address's first letter
(``D``: main, anything else: testnet), so it silently drops a main-network
P2SH address (``A``/``9``) and a regtest P2PKH one (byte 111): both are handed
to it under testnet's byte, which names the same hash and so the same output
script (checked above).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import libdogecoin
from bitcoin.core import CMutableTransaction, CTransaction, x
from bitcoin.core.script import SIGHASH_ALL, CScript, SignatureHash

from ..keys import SigningKey
from .address import decode, p2pkh_address, p2pkh_script, reencode, script_pubkey
from .params import KOINU_PER_DOGE, MAX_MONEY, net

DUST_KOINU = 1_000_000  # 0.01 DOGE: Dogecoin Core's default dust limit; smaller change goes to the fee
FEE_PER_KB = 1_000_000  # 0.01 DOGE per kB: Dogecoin Core's recommended minimum relay fee
MAX_INPUTS = 500


class TxBuildError(ValueError):
    """A payment that cannot be built: a reason word for programs, a detail for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Utxo:
    """An unspent output the key can spend: where it is and how much it holds."""

    txid: str
    vout: int
    amount: int

    def __post_init__(self) -> None:
        if len(self.txid) != 64 or set(self.txid) - set("0123456789abcdef"):
            raise TxBuildError("bad_utxo", "a txid is 64 lowercase hex digits")
        if not (0 <= self.vout < 2**32) or not (0 < self.amount <= MAX_MONEY):
            raise TxBuildError("bad_utxo", f"bad output index or amount in {self.txid}:{self.vout}")


def koinu_text(koinu: int) -> str:
    """``150000000`` -> ``"1.50000000"``: the decimal text libdogecoin reads, made exactly."""
    whole, frac = divmod(koinu, KOINU_PER_DOGE)
    return f"{whole}.{frac:08d}"


def p2pkh_fee(n_inputs: int, n_outputs: int, per_kb: int = FEE_PER_KB) -> int:
    """A fee for a P2PKH transaction's size (148 bytes an input, 34 an output, 10 more)."""
    size = 10 + 148 * n_inputs + 34 * n_outputs
    return max(per_kb, -(-size * per_kb // 1000))


def _for_libdogecoin(address: str, net_name: str) -> str:
    """The address as libdogecoin can read it: the same hash, so the same output script."""
    kind, _ = decode(address, net_name)
    return reencode(address, net_name, "test") if kind == "p2sh" or net_name == "regtest" else address


def _check_amounts(utxos: Sequence[Utxo], outputs: Sequence[tuple[str, int]], fee: int) -> int:
    if not utxos or len(utxos) > MAX_INPUTS:
        raise TxBuildError("no_inputs", f"a payment spends 1 to {MAX_INPUTS} outputs")
    if not outputs:
        raise TxBuildError("no_outputs", "a payment pays at least one address")
    for _, amount in outputs:
        if not isinstance(amount, int) or isinstance(amount, bool) or not (DUST_KOINU <= amount <= MAX_MONEY):
            raise TxBuildError("bad_amount", f"each output is an integer of koinu from {DUST_KOINU} up")
    if not isinstance(fee, int) or not (0 <= fee <= MAX_MONEY):
        raise TxBuildError("bad_amount", "the fee is a non-negative integer of koinu")
    if len({(u.txid, u.vout) for u in utxos}) != len(utxos):
        raise TxBuildError("bad_utxo", "an output is spent twice")
    change = sum(u.amount for u in utxos) - sum(a for _, a in outputs) - fee
    if change < 0:
        raise TxBuildError("insufficient_funds", f"{-change} koinu short")
    return change


def build_payment(
    utxos: Sequence[Utxo],
    outputs: Sequence[tuple[str, int]],
    key: SigningKey,
    net_name: str,
    fee: int,
    change_address: str | None = None,
) -> str:
    """The signed raw transaction (hex) paying outputs from the key's UTXOs, change to the key."""
    net(net_name)
    change = _check_amounts(utxos, outputs, fee)
    change_address = change_address or p2pkh_address(key.public_key, net_name)
    expected = [(script_pubkey(a, net_name), v) for a, v in outputs]
    if change >= DUST_KOINU:
        expected.append((script_pubkey(change_address, net_name), change))
    else:
        fee += change  # change below the dust limit would not relay: it goes to the miner
    decode(change_address, net_name)
    total_in = sum(u.amount for u in utxos)
    idx = libdogecoin.w_start_transaction()
    try:
        for u in utxos:
            if not libdogecoin.w_add_utxo(idx, u.txid, u.vout):
                raise TxBuildError("library", f"libdogecoin refused the input {u.txid}:{u.vout}")
        for address, amount in outputs:
            libdogecoin.w_add_output(idx, _for_libdogecoin(address, net_name), koinu_text(amount))
        raw = libdogecoin.w_finalize_transaction(
            idx,
            _for_libdogecoin(outputs[0][0], net_name),
            koinu_text(fee),
            koinu_text(total_in),
            _for_libdogecoin(change_address, net_name),
        )
    finally:
        libdogecoin.w_clear_transaction(idx)
    if not raw:
        raise TxBuildError("library", "libdogecoin could not finalize the payment")
    tx = CMutableTransaction.from_tx(CTransaction.deserialize(x(raw)))
    got = [(bytes(o.scriptPubKey), o.nValue) for o in tx.vout]
    if got != expected or [(i.prevout.hash[::-1].hex(), i.prevout.n) for i in tx.vin] != [
        (u.txid, u.vout) for u in utxos
    ]:
        raise TxBuildError("library", "libdogecoin built a transaction other than the one asked for")
    code = CScript(p2pkh_script(key.public_key))
    for i in range(len(tx.vin)):
        digest = SignatureHash(code, tx, i, SIGHASH_ALL)
        tx.vin[i].scriptSig = CScript([key.sign_digest(digest) + bytes([SIGHASH_ALL]), key.public_key])
    return tx.serialize().hex()
