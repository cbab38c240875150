"""Equivocation evidence (borgusb/ledger/evidence.py): two votes of one holder for one (account, seq).

Each refusal is a case where a pair must NOT convict anyone: another holder, another seq, the same
id, a signature that is not the holder's. Then where pairs are found: two certificates, the witness.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from borgusb.ledger import ZERO_HASH, certify, sign_acceptance, sign_transfer
from borgusb.ledger.certificate import Acceptance, HolderSets, set_digest
from borgusb.ledger.durable import DurableHolder
from borgusb.ledger.errors import BadHolderSignature, Malformed
from borgusb.ledger.evidence import (
    NotEvidence,
    VoteWitness,
    acceptances,
    between_certificates,
    check_evidence,
    evidence_of,
)
from borgusb.ledger.sim import fixed_key
from borgusb.ledger.store import SCHEMA_VERSION

TS = 1_764_000_000_000
PAYER, BOB, CAROL = fixed_key("ev payer"), fixed_key("ev bob"), fixed_key("ev carol")
HOLDERS = [fixed_key(f"ev holder {i}") for i in range(5)]
FIVE = set_digest(k.public_key_hex for k in HOLDERS)  # five members: every account's holder set
TO_BOB = sign_transfer(PAYER, seq=1, prev=ZERO_HASH, to=BOB.public_key_hex, amount=5, ts=TS)
TO_CAROL = sign_transfer(PAYER, seq=1, prev=ZERO_HASH, to=CAROL.public_key_hex, amount=5, ts=TS)
LATER = sign_transfer(PAYER, seq=2, prev=TO_BOB.id, to=CAROL.public_key_hex, amount=1, ts=TS)


def test_two_votes_of_one_holder_for_one_seq_are_evidence_in_one_form() -> None:
    x, y = sign_acceptance(HOLDERS[0], TO_BOB, FIVE), sign_acceptance(HOLDERS[0], TO_CAROL, FIVE)
    ev = evidence_of(x, y)
    assert ev == evidence_of(y, x) and ev.id == evidence_of(y, x).id  # the same pair, the same evidence
    assert ev.holder == HOLDERS[0].public_key_hex and ev.a.id < ev.b.id
    assert check_evidence(ev.to_dict()) == ev  # round trip through the wire form, signatures checked


@pytest.mark.parametrize(
    "case",
    ["two_holders", "two_seqs", "same_id", "forged_sig"],
)
def test_pairs_that_prove_nothing_are_refused(case: str) -> None:
    x = sign_acceptance(HOLDERS[0], TO_BOB, FIVE)
    y = {
        "two_holders": sign_acceptance(HOLDERS[1], TO_CAROL, FIVE),
        "two_seqs": sign_acceptance(HOLDERS[0], LATER, FIVE),
        "same_id": sign_acceptance(HOLDERS[0], TO_BOB, FIVE),
        # the holder's name on a vote it never signed: someone else's signature over the same bytes
        "forged_sig": Acceptance(
            TO_CAROL.id,
            PAYER.public_key_hex,
            1,
            HOLDERS[0].public_key_hex,
            FIVE,
            sign_acceptance(HOLDERS[1], TO_CAROL, FIVE).sig,
        ),
    }[case]
    with pytest.raises(NotEvidence):
        evidence_of(x, y)
    if case == "forged_sig":  # on the wire, the acceptance's own check refuses it first
        with pytest.raises(BadHolderSignature):
            check_evidence({"v": 1, "a": x.to_dict(), "b": y.to_dict()})


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        {"v": 1, "a": {}},
        {"v": 2, "a": {}, "b": {}},
        {"v": 1, "a": {}, "b": {}, "c": 1},
        {"v": 1, "a": 1, "b": 2},
    ],
)
def test_malformed_evidence_is_refused(doc: object) -> None:
    with pytest.raises(Malformed):
        check_evidence(doc)


def _cert(tx, signers):  # type: ignore[no-untyped-def]
    return certify(tx, [sign_acceptance(HOLDERS[i], tx, FIVE) for i in signers], FIVE)


def test_two_certificates_convict_exactly_the_holders_that_signed_both() -> None:
    a, b = _cert(TO_BOB, [0, 1, 2, 3]), _cert(TO_CAROL, [1, 2, 3, 4])
    found = between_certificates(a, b)
    assert sorted(ev.holder for ev in found) == sorted(HOLDERS[i].public_key_hex for i in (1, 2, 3))
    assert all(check_evidence(ev.to_dict()) == ev for ev in found)
    assert between_certificates(a, _cert(TO_BOB, [1, 2, 3, 4])) == []  # the same transaction: no conflict
    assert between_certificates(a, _cert(LATER, [1, 2, 3, 4])) == []  # another seq: no conflict


def test_the_witness_finds_a_broken_promise_across_certificates_and_forgets_the_oldest_first() -> None:
    w = VoteWitness(capacity=2)
    assert w.observe(acceptances(_cert(TO_BOB, [0, 1, 2, 3]))) == []
    assert w.observe(acceptances(_cert(TO_BOB, [4]))) == []  # more votes for the same id
    found = w.observe(acceptances(_cert(TO_CAROL, [3, 4])))
    assert sorted(ev.holder for ev in found) == sorted(HOLDERS[i].public_key_hex for i in (3, 4))

    other = sign_transfer(BOB, seq=1, prev=ZERO_HASH, to=CAROL.public_key_hex, amount=1, ts=TS)
    w.observe(acceptances(_cert(LATER, [0])))
    w.observe(acceptances(_cert(other, [0])))  # a third slot: the payer's seq 1 is forgotten
    assert len(w) == 2
    assert w.observe(acceptances(_cert(TO_CAROL, [0]))) == []  # so this conflict is not seen (bounded memory)


def test_the_store_keeps_evidence_and_a_version_2_store_is_migrated(tmp_path: Path) -> None:
    sets = HolderSets([k.public_key_hex for k in HOLDERS], 5)
    path = tmp_path / "v2.sqlite"
    d = DurableHolder(path, HOLDERS[0], sets)
    ev = evidence_of(sign_acceptance(HOLDERS[1], TO_BOB, FIVE), sign_acceptance(HOLDERS[1], TO_CAROL, FIVE))
    d.store.keep_evidence(ev.holder, ev.to_dict())
    d.store.keep_evidence(ev.holder, {"v": 1, "another": "piece"})  # the first piece against a key is kept
    d.close()
    d = DurableHolder(path, HOLDERS[0], sets)
    try:
        assert [check_evidence(doc) for doc in d.store.evidence()] == [ev]
    finally:
        d.close()

    db = sqlite3.connect(path)  # what a version-2 holder left: no evidence table
    db.executescript("DROP TABLE evidence; UPDATE meta SET value = '2' WHERE key = 'schema';")
    db.close()
    d = DurableHolder(path, HOLDERS[0], sets)
    try:
        assert d.store.evidence() == []
        assert d.store.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (str(SCHEMA_VERSION),)
    finally:
        d.close()
