"""borgusb.doge without I/O, every transaction checked by the dogecoind stand-in's chain (buidl, not the
libraries that built it): P2PKH payments, the HTLC's fund, claim, refund and CHECKLOCKTIMEVERIFY,
bad signatures, double spends; addresses against the wallet's and pinned vectors."""

from __future__ import annotations

import hashlib

import pytest
from bip_utils import WifDecoder

from borgusb.doge import htlc
from borgusb.doge.address import BadAddress, decode, p2pkh_address, script_pubkey
from borgusb.doge.htlc import (
    HtlcError,
    build_htlc_claim,
    build_htlc_refund,
    extract_secret,
    htlc_address,
    htlc_script,
    parse_htlc,
)
from borgusb.doge.params import NETS
from borgusb.doge.tx import TxBuildError, Utxo, build_payment, koinu_text, p2pkh_fee
from borgusb.keys import SigningKey
from tests.conftest import load_vectors
from tests.standins.dogecoind_standin import MATURITY, REWARD, Chain, RpcFailure

NET = "regtest"
ALICE = SigningKey(hashlib.sha256(b"doge test alice").digest())
BOB = SigningKey(hashlib.sha256(b"doge test bob").digest())
SECRET = hashlib.sha256(b"the swap's secret").digest()
FEE = 1_000_000


def addr(key: SigningKey) -> str:
    return p2pkh_address(key.public_key, NET)


def funded_chain() -> tuple[Chain, Utxo]:
    """A chain whose block 1 pays ALICE a mature coinbase."""
    chain = Chain()
    chain.generate(1, addr(ALICE))
    chain.generate(MATURITY, addr(BOB))
    return chain, Utxo(chain.blocks[1].txids[0], 0, REWARD)


def test_network_bytes_and_the_wallets_address() -> None:
    assert (NETS["main"].p2pkh, NETS["main"].p2sh, NETS["main"].wif) == (0x1E, 0x16, 0x9E)
    assert (NETS["test"].p2pkh, NETS["test"].p2sh, NETS["test"].wif) == (0x71, 0xC4, 0xF1)
    assert (NETS["regtest"].p2pkh, NETS["regtest"].p2sh, NETS["regtest"].wif) == (0x6F, 0xC4, 0xEF)
    assert p2pkh_address(ALICE.public_key, "main") == ALICE.doge_address
    # pinned: the secp256k1 generator point (secret 1) on each network
    g = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
    assert p2pkh_address(g, "main") == "DFpN6QqFfUm3gKNaxN6tNcab1FArL9cZLE"
    assert p2pkh_address(g, "test") == "nesRpRaAbTDmZHwmzBkLd2AtF7Z9L9z5S2"
    assert p2pkh_address(g, "regtest") == "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r"
    with pytest.raises(BadAddress):
        decode(p2pkh_address(g, "main"), "regtest")
    with pytest.raises(BadAddress):
        decode("DFpN6QqFfUm3gKNaxN6tNcab1FArL9cZLF", "main")  # checksum


def test_koinu_are_integers_to_the_last_digit() -> None:
    assert koinu_text(1) == "0.00000001" and koinu_text(150_000_000) == "1.50000000"
    assert p2pkh_fee(1, 2) == FEE


def test_p2pkh_payment_accepted_and_its_outputs_exact() -> None:
    chain, coin = funded_chain()
    raw = build_payment([coin], [(addr(BOB), 12_345_678_901)], ALICE, NET, fee=FEE)
    txid = chain.submit(raw)
    chain.generate(1, addr(BOB))
    assert chain.utxos[(txid, 0)].amount == 12_345_678_901
    assert chain.utxos[(txid, 1)].amount == REWARD - 12_345_678_901 - FEE
    assert chain.utxos[(txid, 1)].script == script_pubkey(addr(ALICE), NET)
    with pytest.raises(RpcFailure) as err:  # the same coin again
        chain.submit(build_payment([coin], [(addr(BOB), 5 * FEE)], ALICE, NET, fee=FEE))
    assert (err.value.code, err.value.message) == (-25, "Missing inputs")


def test_payment_refusals_before_anything_is_built() -> None:
    _, coin = funded_chain()
    with pytest.raises(TxBuildError) as err:
        build_payment([coin], [(addr(BOB), REWARD)], ALICE, NET, fee=FEE)
    assert err.value.reason == "insufficient_funds"
    with pytest.raises(TxBuildError) as err:
        build_payment([coin], [(addr(BOB), 1.5)], ALICE, NET, fee=FEE)  # type: ignore[list-item]
    assert err.value.reason == "bad_amount"
    with pytest.raises(BadAddress):
        build_payment([coin], [(p2pkh_address(BOB.public_key, "main"), FEE)], ALICE, NET, fee=FEE)


def test_bad_signature_rejected() -> None:
    chain, coin = funded_chain()
    raw = bytearray.fromhex(build_payment([coin], [(addr(BOB), 10 * FEE)], ALICE, NET, fee=FEE))
    raw[50] ^= 0x01  # inside the DER signature of the only input
    with pytest.raises(RpcFailure) as err:
        chain.submit(raw.hex())
    assert err.value.code == -26 and err.value.message.startswith("16: mandatory-script-verify-flag-failed")
    with pytest.raises(RpcFailure) as err:  # signed by another key than the coin's
        chain.submit(build_payment([coin], [(addr(BOB), 10 * FEE)], BOB, NET, fee=FEE))
    assert err.value.message.startswith("16: mandatory-script-verify-flag-failed")


def _fund_htlc(chain: Chain, coin: Utxo, locktime: int) -> tuple[bytes, str, int]:
    script = htlc_script(hashlib.sha256(SECRET).digest(), BOB.public_key, ALICE.public_key, locktime)
    amount = 1000 * 10**8
    txid = chain.submit(build_payment([coin], [(htlc_address(script, NET), amount)], ALICE, NET, fee=FEE))
    chain.generate(1, addr(BOB))
    return script, txid, amount


def test_htlc_claimed_with_the_secret_which_the_chain_then_shows() -> None:
    chain, coin = funded_chain()
    script, txid, amount = _fund_htlc(chain, coin, chain.tip + 100)
    assert parse_htlc(script).claim_pubkey == BOB.public_key
    with pytest.raises(HtlcError):
        build_htlc_claim(txid, 0, amount, script, b"wrong" * 7, BOB, addr(BOB), FEE, NET)
    claim = build_htlc_claim(txid, 0, amount, script, SECRET, BOB, addr(BOB), FEE, NET)
    claim_id = chain.submit(claim)
    chain.generate(1, addr(BOB))
    raw_on_chain = chain.txs[claim_id][0].hex()
    assert extract_secret(raw_on_chain, script) == SECRET
    assert (
        extract_secret(build_payment([Utxo("ab" * 32, 0, REWARD)], [(addr(BOB), FEE)], ALICE, NET, FEE), script) is None
    )


def test_htlc_refund_only_after_its_locktime() -> None:
    chain, coin = funded_chain()
    locktime = chain.tip + 5
    script, txid, amount = _fund_htlc(chain, coin, locktime)
    refund = build_htlc_refund(txid, 0, amount, script, ALICE, addr(ALICE), FEE, NET)
    with pytest.raises(RpcFailure) as err:
        chain.submit(refund)
    assert (err.value.code, err.value.message) == (-26, "64: non-final")
    # a refund whose own nLockTime is final now but below the contract's: CHECKLOCKTIMEVERIFY refuses it
    early = htlc._spend(txid, 0, amount, script, addr(ALICE), FEE, NET, chain.tip, htlc.NON_FINAL)
    with pytest.raises(RpcFailure) as err:
        chain.submit(htlc._sign(early, script, ALICE, 0))
    assert err.value.message.startswith("16: mandatory-script-verify-flag-failed")
    chain.generate(locktime - chain.tip, addr(BOB))
    assert chain.tip == locktime
    by_bob = htlc._spend(txid, 0, amount, script, addr(BOB), FEE, NET, locktime, htlc.NON_FINAL)
    with pytest.raises(RpcFailure) as err:  # the claim key cannot take the refund path
        chain.submit(htlc._sign(by_bob, script, BOB, 0))
    assert err.value.message.startswith("16: mandatory-script-verify-flag-failed")
    refund_id = chain.submit(refund)
    chain.generate(1, addr(BOB))
    assert chain.utxos[(refund_id, 0)].amount == amount - FEE
    with pytest.raises(RpcFailure) as err:  # and the claim comes too late: the coin is gone
        chain.submit(build_htlc_claim(txid, 0, amount, script, SECRET, BOB, addr(BOB), FEE, NET))
    assert err.value.message == "Missing inputs"


def test_parse_htlc_refuses_other_scripts() -> None:
    for script in (b"", b"\x51", script_pubkey(addr(ALICE), NET), b"\x63" * 12):
        with pytest.raises(HtlcError):
            parse_htlc(script)


@pytest.mark.parametrize("case", load_vectors("doge/libdogecoin_payments.json", version=1)["cases"], ids=str)
def test_payments_byte_for_byte_as_libdogecoins_own_vectors(case: dict) -> None:
    """The Dogecoin Foundation's expected signed transactions, rebuilt here (libdogecoin builds,
    coincurve signs over python-bitcoinlib's sighash: RFC 6979 gives the very same signatures)."""
    secret, _ = WifDecoder.Decode(case["wif"], net_ver=bytes([NETS[case["net"]].wif]))
    key = SigningKey(secret)
    assert p2pkh_address(key.public_key, case["net"]) == case["change_address"]
    utxos = [Utxo(txid, vout, amount) for txid, vout, amount in case["utxos"]]
    outputs = [(address, amount) for address, amount in case["outputs"]]
    raw = build_payment(utxos, outputs, key, case["net"], fee=case["fee"], change_address=case["change_address"])
    assert raw == case["signed"]


@pytest.mark.parametrize("net", ["main", "test", "regtest"])
def test_p2sh_and_p2pkh_outputs_on_every_network_with_and_without_change(net: str) -> None:
    """libdogecoin reads an address's network from its first letter and silently drops what it does not
    recognise (main P2SH, regtest P2PKH); the payment must still pay exactly what was asked."""
    from bitcoin.core import CTransaction, x

    script = htlc_script(hashlib.sha256(SECRET).digest(), BOB.public_key, ALICE.public_key, 1000)
    htlc_at, bob_at = htlc_address(script, net), p2pkh_address(BOB.public_key, net)
    coin = Utxo("ab" * 32, 0, 10 * 10**8)
    for outputs, change in (
        ([(htlc_at, 10 * 10**8 - FEE)], 0),
        ([(htlc_at, 10**8), (bob_at, 9 * 10**8 - FEE)], 0),
        ([(bob_at, 10**8), (htlc_at, 10**8)], 8 * 10**8 - FEE),
    ):
        tx = CTransaction.deserialize(x(build_payment([coin], outputs, ALICE, net, fee=FEE)))
        want = [(script_pubkey(a, net), v) for a, v in outputs]
        want += [(script_pubkey(p2pkh_address(ALICE.public_key, net), net), change)] if change else []
        assert [(bytes(o.scriptPubKey), o.nValue) for o in tx.vout] == want


def test_the_secret_is_found_in_a_claim_of_any_shape() -> None:
    """A claim with a push before the signature (consensus-valid, not standard) still gives its secret."""
    from bitcoin.core import CMutableTransaction, x
    from bitcoin.core.script import CScript

    script = htlc_script(hashlib.sha256(SECRET).digest(), BOB.public_key, ALICE.public_key, 1000)
    claim = CMutableTransaction.deserialize(
        x(build_htlc_claim("ab" * 32, 0, 10**9, script, SECRET, BOB, addr(BOB), FEE, NET))
    )
    sig = list(CScript(claim.vin[0].scriptSig))[0]
    odd = CMutableTransaction.from_tx(claim)
    odd.vin[0].scriptSig = CScript([b"padding", sig, SECRET, 1, script])
    assert extract_secret(odd.serialize().hex(), script) == SECRET
    other = htlc_script(hashlib.sha256(b"another").digest(), BOB.public_key, ALICE.public_key, 1000)
    assert extract_secret(odd.serialize().hex(), other) is None  # another contract's claim it is not
    with pytest.raises(HtlcError):  # a fee that leaves dust
        build_htlc_claim("ab" * 32, 0, 10**9, script, SECRET, BOB, addr(BOB), 10**9 - 1, NET)


def test_htlc_time_locked_refund_waits_for_the_median_time_past() -> None:
    """A locktime that is a Unix time is judged by the median of the last 11 block times (BIP-113)."""
    chain, coin = funded_chain()
    locktime = chain.median_time_past() + 3600
    script, txid, amount = _fund_htlc(chain, coin, locktime)
    refund = build_htlc_refund(txid, 0, amount, script, ALICE, addr(ALICE), FEE, NET)
    chain.advance_time(7200)
    chain.generate(1, addr(BOB))  # one late block does not move the median yet
    with pytest.raises(RpcFailure) as err:
        chain.submit(refund)
    assert err.value.message == "64: non-final"
    chain.generate(6, addr(BOB))
    assert chain.median_time_past() > locktime
    assert chain.submit(refund)
