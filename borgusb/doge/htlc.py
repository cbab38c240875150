"""The standard P2SH hash-time-locked contract (the BIP-199 shape) on Dogecoin.

    OP_IF
        OP_SHA256 <secret_hash> OP_EQUALVERIFY <claim_pubkey>
    OP_ELSE
        <locktime> OP_CHECKLOCKTIMEVERIFY OP_DROP <refund_pubkey>
    OP_ENDIF
    OP_CHECKSIG

Funding is an ordinary payment to `htlc_address` (`tx.build_payment`). The
claim spends it with ``<sig> <secret> OP_TRUE <script>`` any time, revealing
the secret on the chain (`extract_secret`); the refund spends it with ``<sig>
OP_FALSE <script>`` in a transaction whose nLockTime is the contract's
locktime and whose input sequence is not final, so no node accepts it before
then. Scripts, serialization and the legacy sighash are python-bitcoinlib's;
signatures are coincurve's (libsecp256k1, low-S).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bitcoin.core import CMutableTransaction, CMutableTxIn, CMutableTxOut, COutPoint, CTransaction, lx, x
from bitcoin.core.script import (
    OP_CHECKLOCKTIMEVERIFY,
    OP_CHECKSIG,
    OP_DROP,
    OP_ELSE,
    OP_ENDIF,
    OP_EQUALVERIFY,
    OP_FALSE,
    OP_IF,
    OP_SHA256,
    OP_TRUE,
    SIGHASH_ALL,
    CScript,
    CScriptInvalidError,
    SignatureHash,
)

from ..keys import SigningKey
from .address import p2sh_address, script_pubkey
from .params import MAX_MONEY
from .tx import DUST_KOINU

MAX_LOCKTIME = 2**32 - 1
NON_FINAL = 0xFFFFFFFE  # an input sequence below final: nLockTime (and so CLTV) is enforced


class HtlcError(ValueError):
    """Not an HTLC of this shape, or a spend that cannot be built."""


@dataclass(frozen=True, slots=True)
class Htlc:
    """The terms a script commits to."""

    secret_hash: bytes
    claim_pubkey: bytes
    refund_pubkey: bytes
    locktime: int


def htlc_script(secret_hash: bytes, claim_pubkey: bytes, refund_pubkey: bytes, locktime: int) -> bytes:
    """The redeem script (see the module's docstring); locktime is a block height below 500,000,000
    or a Unix time at or above it, as nLockTime reads it."""
    if len(secret_hash) != 32:
        raise HtlcError("the secret hash is a SHA-256 (32 bytes)")
    if len(claim_pubkey) != 33 or len(refund_pubkey) != 33:
        raise HtlcError("keys are 33-byte compressed public keys")
    if not (0 < locktime <= MAX_LOCKTIME):
        raise HtlcError("the locktime is from 1 to 2**32-1")
    return bytes(
        CScript(
            [
                OP_IF,
                OP_SHA256,
                secret_hash,
                OP_EQUALVERIFY,
                claim_pubkey,
                OP_ELSE,
                locktime,
                OP_CHECKLOCKTIMEVERIFY,
                OP_DROP,
                refund_pubkey,
                OP_ENDIF,
                OP_CHECKSIG,
            ]
        )
    )


def parse_htlc(script: bytes) -> Htlc:
    """The terms of a script, which must be exactly `htlc_script` of them (byte for byte)."""
    try:
        ops = list(CScript(script))
    except CScriptInvalidError as exc:
        raise HtlcError(f"not a script: {exc}") from None
    if len(ops) != 12 or not all(isinstance(ops[i], bytes) for i in (2, 4, 9)):
        raise HtlcError("not an HTLC script")
    number = ops[6]
    locktime = int(number) if not isinstance(number, bytes) else int.from_bytes(number, "little", signed=True)
    try:
        terms = Htlc(bytes(ops[2]), bytes(ops[4]), bytes(ops[9]), locktime)
        rebuilt = htlc_script(terms.secret_hash, terms.claim_pubkey, terms.refund_pubkey, terms.locktime)
    except (HtlcError, TypeError, ValueError):
        raise HtlcError("not an HTLC script") from None
    if rebuilt != script:
        raise HtlcError("not an HTLC script")
    return terms


def htlc_address(script: bytes, net: str) -> str:
    """The P2SH address that funds the contract."""
    return p2sh_address(script, net)


def _spend(
    funding_txid: str,
    vout: int,
    amount: int,
    script: bytes,
    to_address: str,
    fee: int,
    net: str,
    locktime: int,
    sequence: int,
) -> CMutableTransaction:
    if not isinstance(amount, int) or not isinstance(fee, int) or not (0 <= fee <= amount - DUST_KOINU <= MAX_MONEY):
        raise HtlcError(f"the fee is an integer that leaves at least {DUST_KOINU} koinu of the contract's amount")
    txin = CMutableTxIn(COutPoint(lx(funding_txid), vout), nSequence=sequence)
    txout = CMutableTxOut(amount - fee, CScript(script_pubkey(to_address, net)))
    return CMutableTransaction([txin], [txout], nLockTime=locktime)


def _sign(tx: CMutableTransaction, script: bytes, key: SigningKey, *pushes: bytes | int) -> str:
    digest = SignatureHash(CScript(script), tx, 0, SIGHASH_ALL)
    sig = key.sign_digest(digest) + bytes([SIGHASH_ALL])
    tx.vin[0].scriptSig = CScript([sig, *pushes, script])
    return tx.serialize().hex()


def build_htlc_claim(
    funding_txid: str,
    vout: int,
    amount: int,
    script: bytes,
    secret: bytes,
    claim_key: SigningKey,
    to_address: str,
    fee: int,
    net: str,
) -> str:
    """The signed claim (hex): the contract's amount less the fee to to_address, revealing secret."""
    terms = parse_htlc(script)
    if hashlib.sha256(secret).digest() != terms.secret_hash:
        raise HtlcError("this secret does not open the contract")
    if claim_key.public_key != terms.claim_pubkey:
        raise HtlcError("this key is not the contract's claim key")
    tx = _spend(funding_txid, vout, amount, script, to_address, fee, net, 0, 0xFFFFFFFF)
    return _sign(tx, script, claim_key, secret, OP_TRUE)


def build_htlc_refund(
    funding_txid: str,
    vout: int,
    amount: int,
    script: bytes,
    refund_key: SigningKey,
    to_address: str,
    fee: int,
    net: str,
) -> str:
    """The signed refund (hex): valid only once the chain has passed the contract's locktime."""
    terms = parse_htlc(script)
    if refund_key.public_key != terms.refund_pubkey:
        raise HtlcError("this key is not the contract's refund key")
    tx = _spend(funding_txid, vout, amount, script, to_address, fee, net, terms.locktime, NON_FINAL)
    return _sign(tx, script, refund_key, OP_FALSE)


def extract_secret(raw_tx_hex: str, script: bytes) -> bytes | None:
    """The secret a claim of this contract reveals, or None if the transaction is no such claim."""
    terms = parse_htlc(script)
    try:
        tx = CTransaction.deserialize(x(raw_tx_hex))
    except Exception:  # python-bitcoinlib raises several types for truncated or bad bytes
        return None
    for txin in tx.vin:
        try:
            pushes = list(CScript(txin.scriptSig))
        except CScriptInvalidError:
            continue
        if not pushes or pushes[-1] != script:
            continue
        # any push, not only the standard claim's second: a claim shaped otherwise (valid by consensus,
        # if not standard) must not hide the secret from the side that still has to claim its leg
        for push in pushes[:-1]:
            if isinstance(push, bytes) and hashlib.sha256(push).digest() == terms.secret_hash:
                return bytes(push)
    return None
