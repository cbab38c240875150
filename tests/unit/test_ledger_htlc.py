"""Hash-time-locked transfers in the ledger core: pinned vectors, every refusal, one resolution per lock."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from coincurve import PublicKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from borgusb.ledger import (
    SUPPLY,
    ZERO_HASH,
    Balance,
    HolderSets,
    Tx,
    check_resolution,
    check_tx,
    hash_lock,
    parse_tx,
    sign_claim,
    sign_lock,
    sign_refund,
    sign_reward,
    sign_transfer,
)
from borgusb.ledger.certificate import set_digest, sign_acceptance
from borgusb.ledger.durable import DurableHolder
from borgusb.ledger.errors import LedgerError
from borgusb.ledger.htlc import (
    HTLC_GRACE_MS,
    MAX_RESOLUTION_BYTES,
    Resolution,
    ResolutionCertificate,
    Vote,
    check_resolution_certificate,
    check_time,
    check_vote,
    parse_resolution,
    parse_resolution_certificate,
    sign_vote,
    signing_bytes,
)
from borgusb.ledger.sim import Network, fixed_key
from borgusb.ledger.tx import MAX_LOCK_MS

PAYER = fixed_key("borgusb.ledger.vector.payer")
PAYEE = fixed_key("borgusb.ledger.vector.payee")
THIEF = fixed_key("thief")
TS = 1_764_000_000_000
SECRET = hashlib.sha256(b"borgusb.ledger.vector.secret").digest()
EXPIRY = TS + 3_600_000
SHELL = 10**8
_LOCK_SIG = (
    "3045022100c6ed4d5b0917c9453a61adb0ff14af36067e460f13d45450a14af8051eb603c902206ef2341f82c5c51c5f2264df409c963e"
    "33faff4cb085a9c7cd1cb7056abe9ce4"
)
_LOCK = (
    '{"account":"02d798a4c2b058648749badafb8c4967d025af0174485ff8225138bd0a1d04716b","amount":250000000,'
    '"expiry":1764003600000,"kind":"htlc-lock","prev":"0000000000000000000000000000000000000000000000000000000000000000",'
    '"ref":"b42c3839450c2380537057aac3f674a5a666afc081de3a8ad4192f6ddc7f22c1","seq":1,"sig":"' + _LOCK_SIG + '",'
    '"to":"03c5b5568f519459a76c811375da463526c155358253816ede121d82558e6123d6","ts":1764000000000,"v":1}'
)

# ------------------------------------------------------------------ pinned vectors
# source: `python -m tests.unit.test_ledger_htlc` (keys = sha256 of their label, secret = sha256(label), fixed ts);
# version 1 of the lock and resolution formats. Independent check: OpenSSL (through `cryptography`) verifies
# every signature over bytes built here with json.dumps by hand (test_htlc_vectors_check_independently).
VECTORS: dict[str, Any] = {
    "source": "tests/unit/test_ledger_htlc.py _generate(); keys sha256(label), secret sha256(label), ts 1764000000000",
    "version": 1,
    "cases": [
        {"name": "lock_first", "id": "496d7c5daa9ed3f99557b25245e7b338db270c4fb7b85f85878c50de45bd5a2a", "wire": _LOCK},
        {
            "name": "claim",
            "id": "6253ac817d4f81f251f9c1d628a4b91470a4cc1ae2fdceb20a9512bb2693567e",
            "wire": '{"by":"03c5b5568f519459a76c811375da463526c155358253816ede121d82558e6123d6","kind":"htlc-claim",'
            '"lock":' + _LOCK + ',"preimage":"de2d3e3c79730908cbf7368b233e049c1f527f8171aef71fbd67137d520b36c1",'
            '"sig":"3045022100973aff9bed5aad8aa3ceaed8f267e9ace7db607f4c240c190375f6a90c8f6cd402204954bbc1135ef47ca09e5'
            '25de44891432368a1e08408a2fe31c1451e978ae7b9","v":1}',
        },
        {
            "name": "refund",
            "id": "bacb9fbfe6779857072016c93f941d6a9d295ffe4b23abc7812fe6a72331a88e",
            "wire": '{"by":"02d798a4c2b058648749badafb8c4967d025af0174485ff8225138bd0a1d04716b","kind":"htlc-refund",'
            '"lock":' + _LOCK + ',"preimage":"",'
            '"sig":"304402204d6e176df0fbc5fd53d9f00c7236bac6ad21dfb2f27984634bd79163d26064a6022020089a0620e7348bdda3cb'
            'fe384e9d986226fba4f490756aab0112b02bf00f3d","v":1}',
        },
    ],
}


def _lock(**kw: Any) -> Tx:
    args: dict[str, Any] = dict(
        seq=1, prev=ZERO_HASH, to=PAYEE.public_key_hex, amount=250_000_000, hash_lock=hash_lock(SECRET)
    )
    args.update(expiry=EXPIRY, ts=TS)
    args.update(kw)
    return sign_lock(PAYER, **args)


def _vectors() -> dict[str, Tx | Resolution]:
    lock = _lock()
    return {"lock_first": lock, "claim": sign_claim(PAYEE, lock, SECRET), "refund": sign_refund(PAYER, lock)}


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_htlc_wire_format_is_pinned(case: dict[str, str]) -> None:
    made = _vectors()[case["name"]]
    assert made.encode().decode() == case["wire"] and made.id == case["id"]
    parsed = (
        parse_tx(case["wire"].encode()) if case["name"] == "lock_first" else parse_resolution(case["wire"].encode())
    )
    assert parsed == made


def _by_hand(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _openssl_verify(pubkey: str, sig: str, msg: bytes) -> None:
    point = PublicKey(bytes.fromhex(pubkey)).format(compressed=False)
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), point)
    key.verify(bytes.fromhex(sig), msg, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_htlc_vectors_check_independently(case: dict[str, str]) -> None:
    doc = json.loads(case["wire"])
    lock = doc if case["name"] == "lock_first" else doc["lock"]
    lock_signed = _by_hand({**{k: v for k, v in lock.items() if k != "sig"}, "d": "borgusb.ledger.tx"})
    _openssl_verify(lock["account"], lock["sig"], lock_signed)
    lock_id = hashlib.sha256(lock_signed).hexdigest()
    assert lock_id == VECTORS["cases"][0]["id"]
    assert hashlib.sha256(SECRET).hexdigest() == lock["ref"]
    if case["name"] != "lock_first":
        signed = _by_hand(
            {"d": "borgusb.ledger.htlc", "v": 1, "kind": doc["kind"], "lock": lock_id, "by": doc["by"]}
            | {"preimage": doc["preimage"]}
        )
        _openssl_verify(doc["by"], doc["sig"], signed)
        assert hashlib.sha256(signed).hexdigest() == case["id"]


def test_older_kinds_keep_their_bytes() -> None:
    t = sign_transfer(PAYER, seq=1, prev=ZERO_HASH, to=PAYEE.public_key_hex, amount=150_000_000, ts=TS)
    assert "expiry" not in t.to_dict() and t.expiry == 0  # test_ledger_tx pins these bytes unchanged


# ------------------------------------------------------------------ refusals of the documents


def _tx_reason(doc: Any) -> str:
    with pytest.raises(LedgerError) as err:
        check_tx(doc)
    return err.value.reason


def _res_reason(doc: Any) -> str:
    with pytest.raises(LedgerError) as err:
        check_resolution(doc)
    return err.value.reason


def test_lock_refusals() -> None:
    good = _lock().to_dict()
    assert check_tx(good) == _lock()
    assert _tx_reason(dict(good, ref="")) == "malformed"  # a lock names its hash lock
    assert _tx_reason(dict(good, expiry=1.5)) == "malformed"
    assert _tx_reason({k: v for k, v in good.items() if k != "expiry"}) == "malformed"
    assert _tx_reason(dict(good, expiry=TS)) == "bad_expiry"  # not after it was signed
    assert _tx_reason(dict(good, expiry=TS + MAX_LOCK_MS + 1)) == "bad_expiry"  # more than a week
    assert _tx_reason(dict(good, expiry=EXPIRY + 1)) == "bad_signature"  # the expiry is signed
    transfer = sign_transfer(PAYER, seq=1, prev=ZERO_HASH, to=PAYEE.public_key_hex, amount=1, ts=TS).to_dict()
    assert _tx_reason(dict(transfer, expiry=EXPIRY)) == "malformed"  # only a lock has an expiry
    with pytest.raises(LedgerError) as err:
        _lock(expiry=TS - 1)
    assert err.value.reason == "bad_expiry"


def test_resolution_refusals() -> None:
    lock = _lock()
    claim = sign_claim(PAYEE, lock, SECRET).to_dict()
    refund = sign_refund(PAYER, lock).to_dict()
    wrong = hashlib.sha256(b"a guess").digest()
    with pytest.raises(LedgerError) as err:
        sign_claim(PAYEE, lock, wrong)
    assert err.value.reason == "wrong_preimage"
    assert _res_reason(dict(claim, preimage=wrong.hex())) == "wrong_preimage"
    with pytest.raises(LedgerError) as err:  # the payer knows the secret but is not the claimant
        sign_claim(PAYER, lock, SECRET)
    assert err.value.reason == "not_claimant"
    with pytest.raises(LedgerError) as err:
        sign_refund(PAYEE, lock)
    assert err.value.reason == "not_payer"
    assert _res_reason(dict(refund, by=THIEF.public_key_hex)) == "not_payer"
    # forged signatures: the thief signs as the claimant; the claimant's signature over another lock
    forged = dict(claim, sig=THIEF.sign(signing_bytes("htlc-claim", lock.id, PAYEE.public_key_hex, SECRET.hex())).hex())
    assert _res_reason(forged) == "bad_signature"
    other = _lock(expiry=EXPIRY + 1)
    assert _res_reason(dict(claim, sig=sign_claim(PAYEE, other, SECRET).sig)) == "bad_signature"
    assert _res_reason(dict(claim, lock=dict(lock.to_dict(), amount=1))) == "bad_signature"  # the lock's own sig
    assert _res_reason(dict(refund, preimage=SECRET.hex())) == "malformed"  # a refund carries no secret
    assert _res_reason(dict(claim, preimage="")) == "malformed"
    assert _res_reason(dict(claim, kind="htlc-lock")) == "malformed"
    transfer = sign_transfer(PAYER, seq=1, prev=ZERO_HASH, to=PAYEE.public_key_hex, amount=1, ts=TS)
    assert _res_reason(dict(claim, lock=transfer.to_dict())) == "malformed"  # only a lock is resolved
    assert _res_reason(dict(claim, extra=1)) == "malformed"
    with pytest.raises(LedgerError) as err:
        parse_resolution(json.dumps(claim).encode())  # not canonical
    assert err.value.reason == "malformed"
    with pytest.raises(LedgerError) as err:
        parse_resolution(b"{" + b" " * MAX_RESOLUTION_BYTES + b"}")
    assert err.value.reason == "malformed"
    with pytest.raises(ValueError):
        hash_lock(b"short")  # a secret we draw is 32 bytes


@pytest.mark.parametrize("size", [1, 33, 520])
def test_any_secret_that_opens_a_doge_htlc_opens_the_lock(size: int) -> None:
    """The Doge script has no size check: an initiator who revealed an odd-sized secret there must not
    keep the ledger leg from being claimed with it."""
    secret = bytes([7]) * size
    lock = _lock(hash_lock=hashlib.sha256(secret).hexdigest())
    claim = sign_claim(PAYEE, lock, secret)
    assert parse_resolution(claim.encode()) == claim
    too_long = dict(claim.to_dict(), preimage="07" * 521)
    assert _res_reason(too_long) == "malformed"


def test_claim_and_refund_windows() -> None:
    lock = _lock()
    claim, refund = sign_claim(PAYEE, lock, SECRET), sign_refund(PAYER, lock)
    assert check_time(claim, EXPIRY - 1) is claim
    assert check_time(refund, EXPIRY + HTLC_GRACE_MS) is refund
    for res, now, reason in (
        (claim, EXPIRY, "expired"),
        (refund, EXPIRY, "not_expired"),
        (refund, EXPIRY + HTLC_GRACE_MS - 1, "not_expired"),
    ):
        with pytest.raises(LedgerError) as err:
            check_time(res, now)
        assert err.value.reason == reason


# ------------------------------------------------------------------ holders: one resolution per lock

NODES = [fixed_key(f"htlc node {i}") for i in range(5)]
FIVE = set_digest(k.public_key_hex for k in NODES)  # five members: every account's holder set
GRACE = 1_000


def _locked_net(expiry: int = EXPIRY, deliver: bool = True, faulty: int = 0) -> tuple[Network, Tx]:
    net = Network(NODES, faulty=faulty, htlc_grace_ms=GRACE)
    fund = sign_reward(PAYER, seq=1, prev=ZERO_HASH, amount=10 * SHELL, ref="cd" * 32, ts=TS)
    accs, _ = net.submit(fund, TS)
    cert = net.certify(fund, accs)
    assert cert is not None and net.deliver(cert) == {}
    lock = _lock(amount=4 * SHELL, expiry=expiry)
    accs, refused = net.submit(lock, TS)
    assert refused == {}
    lock_cert = net.certify(lock, accs)
    assert lock_cert is not None
    if deliver:
        assert net.deliver(lock_cert) == {}  # the payer's holders only: a lock credits nobody
    return net, lock


def _read(net: Network, who: Any) -> int:
    got = net.read(who.public_key_hex)
    assert isinstance(got, Balance), got
    return got.balance


def _states(net: Network, lock: Tx) -> set[tuple[str, str]]:
    return {net.holders[h].lock_answer(lock).says for h in net.sets.of(lock.account)}


def test_lock_debits_now_and_credits_nobody_until_claimed() -> None:
    net, lock = _locked_net()
    assert (_read(net, PAYER), _read(net, PAYEE)) == (6 * SHELL, 0)
    assert _states(net, lock) == {("open", "")}
    claim = sign_claim(PAYEE, lock, SECRET)
    votes, refused = net.resolve(claim, EXPIRY - 1)
    assert refused == {} and len(votes) == 5
    cert = net.certify_resolution(claim, votes)
    assert cert is not None and net.settle(cert) == {}
    assert (_read(net, PAYER), _read(net, PAYEE)) == (6 * SHELL, 4 * SHELL)
    assert _states(net, lock) == {("claimed", claim.id)}
    answer = net.holders[net.sets.of(lock.account)[0]].lock_answer(lock)
    assert answer.resolution is not None and bytes.fromhex(answer.resolution.resolution.preimage) == SECRET
    assert net.settle(cert) == {}  # delivered again: credited once
    assert _read(net, PAYEE) == 4 * SHELL
    # the second resolution: refused by every holder, whatever the time
    refund = sign_refund(PAYER, lock)
    _, refused = net.resolve(refund, EXPIRY + GRACE)
    assert set(refused.values()) == {"already_resolved"}
    assert net.resolve(claim, EXPIRY + 10 * GRACE)[0] == votes  # a replay: the same votes back


def test_refund_after_expiry_returns_the_units() -> None:
    net, lock = _locked_net()
    refund = sign_refund(PAYER, lock)
    _, refused = net.resolve(refund, EXPIRY + GRACE - 1)
    assert set(refused.values()) == {"not_expired"}
    votes, refused = net.resolve(refund, EXPIRY + GRACE)
    cert = net.certify_resolution(refund, votes)
    assert cert is not None and net.settle(cert) == {}
    assert (_read(net, PAYER), _read(net, PAYEE)) == (10 * SHELL, 0)
    assert _states(net, lock) == {("refunded", refund.id)}
    _, refused = net.resolve(sign_claim(PAYEE, lock, SECRET), EXPIRY - 1)  # even with a clock that is behind
    assert set(refused.values()) == {"already_resolved"}


def test_claim_after_expiry_and_unknown_locks_are_refused() -> None:
    net, lock = _locked_net()
    _, refused = net.resolve(sign_claim(PAYEE, lock, SECRET), EXPIRY)
    assert set(refused.values()) == {"expired"}
    net, lock = _locked_net(deliver=False)  # accepted but its certificate never came: not yet locked
    _, refused = net.resolve(sign_claim(PAYEE, lock, SECRET), TS)
    assert set(refused.values()) == {"unknown_lock"}


def test_a_lock_offered_after_its_expiry_is_refused() -> None:
    net = Network(NODES)
    lock = _lock(expiry=TS + 10)
    _, refused = net.submit(lock, TS + 10)
    assert set(refused.values()) == {"bad_expiry"}


def test_claim_racing_refund_at_expiry_at_most_one_is_certified() -> None:
    """Holders' clocks straddle the expiry: some vote for the claim, others for the refund; never both."""
    for split in range(6):
        net, lock = _locked_net()
        claim, refund = sign_claim(PAYEE, lock, SECRET), sign_refund(PAYER, lock)
        holders = list(net.sets.of(lock.account))
        votes: list[Vote] = []
        early, late = (claim, EXPIRY - 1), (refund, EXPIRY + GRACE)
        for i, h in enumerate(holders):  # the first `split` holders see the claim first, the others the refund
            for res, now in (early, late) if i < split else (late, early):
                got, _ = net.resolve(res, now, [h])
                votes += got
        assert len(votes) == 5  # each holder voted once: its second offer was already_resolved
        certs = [c for r in (claim, refund) if (c := net.certify_resolution(r, votes)) is not None]
        assert [c.resolution.kind for c in certs] == ["htlc-claim" if split >= 3 else "htlc-refund"]


def _cert(res: Resolution, signers: list[Any]) -> ResolutionCertificate:
    return ResolutionCertificate(
        res, FIVE, tuple(sorted((k.public_key_hex, sign_vote(k, res, FIVE).sig) for k in signers))
    )


def test_resolution_certificates_are_checked() -> None:
    net, lock = _locked_net()
    claim = sign_claim(PAYEE, lock, SECRET)
    holders = list(net.sets.of(lock.account))
    keys = {k.public_key_hex: k for k in NODES}
    q = net.sets.quorum(lock.account)

    def reason(cert: ResolutionCertificate) -> str:
        with pytest.raises(LedgerError) as err:
            check_resolution_certificate(cert, holders, q)
        return err.value.reason

    good = _cert(claim, [keys[h] for h in holders[:q]])
    assert check_resolution_certificate(good, holders, q) is good
    assert parse_resolution_certificate(good.encode()) == good
    assert reason(_cert(claim, [keys[h] for h in holders[: q - 1]])) == "no_quorum"
    assert reason(_cert(claim, [keys[h] for h in holders[: q - 1]] + [THIEF])) == "not_holder_signer"
    forged = ResolutionCertificate(claim, FIVE, good.sigs[:-1] + ((good.sigs[-1][0], THIEF.sign(b"x").hex()),))
    assert reason(forged) == "bad_holder_signature"
    # a holder's acceptance of the lock transaction cannot pass for a vote on its resolution
    lifted = tuple((h, sign_acceptance(keys[h], lock, FIVE).sig) for h, _ in good.sigs)
    assert reason(ResolutionCertificate(claim, FIVE, lifted)) == "bad_holder_signature"
    # a certificate of the refund does not vouch for the claim
    refund_votes = _cert(sign_refund(PAYER, lock), [keys[h] for h in holders])
    assert reason(ResolutionCertificate(claim, FIVE, refund_votes.sigs)) == "bad_holder_signature"
    with pytest.raises(LedgerError) as err:
        check_vote(dict(sign_vote(keys[holders[0]], claim, FIVE).to_dict(), id="00" * 32))
    assert err.value.reason == "bad_holder_signature"


def test_a_refund_vote_yields_to_a_claim_that_the_refund_can_no_longer_beat() -> None:
    """Quorum 4 of 5: the claim reached three holders before the expiry, the refund the other two after it.
    Neither has a quorum; shown the claim's three votes, the two refund voters vote for the claim too."""
    net, lock = _locked_net(faulty=1)
    h = list(net.sets.of(lock.account))
    claim, refund = sign_claim(PAYEE, lock, SECRET), sign_refund(PAYER, lock)
    claim_votes, _ = net.resolve(claim, EXPIRY - 1, h[:3])
    refund_votes, _ = net.resolve(refund, EXPIRY + GRACE, h[3:])
    assert net.certify_resolution(claim, claim_votes) is None and net.certify_resolution(refund, refund_votes) is None
    thief_votes = [sign_vote(THIEF, claim, FIVE), Vote(lock.id, claim.id, h[4], FIVE, claim_votes[0].sig)]
    for proof in (claim_votes[:2], claim_votes[:2] + thief_votes, claim_votes[:1] * 3):  # not enough distinct, valid
        _, refused = net.resolve(claim, EXPIRY + GRACE, h[3:], proof)
        assert set(refused.values()) == {"already_resolved"}
    more, refused = net.resolve(claim, EXPIRY + GRACE, h[3:], claim_votes)
    assert refused == {} and len(more) == 2
    cert = net.certify_resolution(claim, claim_votes + more)
    assert cert is not None and len(cert.sigs) == 5 and net.settle(cert) == {}
    assert (_read(net, PAYER), _read(net, PAYEE)) == (6 * SHELL, 4 * SHELL)
    assert net.certify_resolution(refund, refund_votes) is None  # the refund's two votes stay two
    _, refused = net.resolve(refund, EXPIRY + GRACE, h[3:])
    assert set(refused.values()) == {"already_resolved"}  # and the switched holders never go back


def test_a_certified_refund_never_yields() -> None:
    net, lock = _locked_net(faulty=1)
    h = list(net.sets.of(lock.account))
    claim, refund = sign_claim(PAYEE, lock, SECRET), sign_refund(PAYER, lock)
    claim_votes, _ = net.resolve(claim, EXPIRY - 1, h[:1])
    refund_votes, _ = net.resolve(refund, EXPIRY + GRACE, h[1:])
    cert = net.certify_resolution(refund, refund_votes)
    assert cert is not None and net.settle(cert) == {}
    # even shown votes that would pass the threshold (forged by lying holders), a holder that saw the refund
    # certified keeps it
    forged = claim_votes + [sign_vote(next(k for k in NODES if k.public_key_hex == x), claim, FIVE) for x in h[1:3]]
    _, refused = net.resolve(claim, EXPIRY + GRACE, h[3:], forged)
    assert set(refused.values()) == {"already_resolved"}


# ------------------------------------------------------------------ the store


def test_votes_and_settlements_survive_a_restart(tmp_path: Path) -> None:
    sets = HolderSets([k.public_key_hex for k in NODES], 5)
    net, lock = _locked_net()
    claim, refund = sign_claim(PAYEE, lock, SECRET), sign_refund(PAYER, lock)
    me = NODES[0]
    path = tmp_path / "h.sqlite"
    d = DurableHolder(path, me, sets, htlc_grace_ms=GRACE)
    for cert in net.certs.values():  # the funding and the lock, in chain order
        d.on_certificate(cert)
    vote = d.resolve(claim, EXPIRY - 1)
    votes, _ = net.resolve(claim, EXPIRY - 1)
    cert = net.certify_resolution(claim, votes)
    assert cert is not None and d.settle(cert).new
    d.close()
    d = DurableHolder(path, me, sets, htlc_grace_ms=GRACE)
    try:
        assert d.resolve(claim, EXPIRY + 5 * GRACE) == vote  # the same vote, whatever the time
        with pytest.raises(LedgerError) as err:
            d.resolve(refund, EXPIRY + GRACE)
        assert err.value.reason == "already_resolved"
        assert d.holder.lock_answer(lock).says == ("claimed", claim.id)
        assert d.holder.balance(PAYEE.public_key_hex) == 4 * SHELL and not d.settle(cert).new
        assert d.holder.balance(PAYER.public_key_hex) == 6 * SHELL
    finally:
        d.close()
    # the database holds one vote per lock, whatever the memory above says
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO htlc_votes VALUES (?, 'x', '{}', '{}')", (lock.id,))
    db.close()


def test_a_yielded_vote_is_kept_across_a_restart(tmp_path: Path) -> None:
    sets = HolderSets([k.public_key_hex for k in NODES], 5)  # quorum 3: the threshold is 3 votes
    net, lock = _locked_net()
    claim, refund = sign_claim(PAYEE, lock, SECRET), sign_refund(PAYER, lock)
    path = tmp_path / "y.sqlite"
    d = DurableHolder(path, NODES[0], sets, htlc_grace_ms=GRACE)
    try:
        for cert in net.certs.values():
            d.on_certificate(cert)
        d.resolve(refund, EXPIRY + GRACE)
        others = [h for h in net.sets.of(lock.account) if h != NODES[0].public_key_hex]
        proof, _ = net.resolve(claim, EXPIRY - 1, others[:3])
        vote = d.resolve(claim, EXPIRY + GRACE, proof)
    finally:
        d.close()
    d = DurableHolder(path, NODES[0], sets, htlc_grace_ms=GRACE)
    try:
        assert d.holder.state.res_votes[lock.id] == vote and d.resolve(claim, EXPIRY + GRACE) == vote
        with pytest.raises(LedgerError) as err:
            d.resolve(refund, EXPIRY + GRACE)
        assert err.value.reason == "already_resolved"
    finally:
        d.close()


@pytest.mark.parametrize("version", ["1", "4"])
def test_a_store_of_the_first_signed_format_is_retired(tmp_path: Path, version: str) -> None:
    """Schemas 1 to 4 hold acceptances and certificates that named no holder set, which no holder
    takes any more: the database is renamed aside (kept, never read) and a new one is made."""
    sets = HolderSets([k.public_key_hex for k in NODES], 5)
    path = tmp_path / "ledger.sqlite"
    d = DurableHolder(path, NODES[0], sets, verify_work=lambda tx: True)
    fund = sign_reward(PAYER, seq=1, prev=ZERO_HASH, amount=SHELL, ref="ef" * 32, ts=TS)
    d.accept(fund, TS)
    d.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (version,))
    db.commit()
    db.close()
    d = DurableHolder(path, NODES[0], sets, verify_work=lambda tx: True)
    try:
        assert d.holder.state.votes == {} and d.holder.head(fund.account) == (0, ZERO_HASH)
        assert d.store.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("5",)
        retired = sqlite3.connect(tmp_path / f"ledger.sqlite.schema{version}-retired")
        assert retired.execute("SELECT count(*) FROM votes").fetchone() == (1,)  # kept for the record
        retired.close()
    finally:
        d.close()


def test_supply_counts_open_locks() -> None:
    net, lock = _locked_net()
    held = sum(_read(net, k) for k in (PAYER, PAYEE))
    assert held + lock.amount == 10 * SHELL < SUPPLY  # the lock's units are nobody's until resolved


def _generate() -> None:  # pragma: no cover - run by hand to regenerate the vectors (bump "version" first)
    for name, made in _vectors().items():
        print(json.dumps({"name": name, "id": made.id, "wire": made.encode().decode()}))


if __name__ == "__main__":  # pragma: no cover
    _generate()
