"""Payloads shaped like the peerPaysCell's real ones, for tests/fuzz/test_receptor_fuzz.py's RECEPTORS.

Transactions and certificates signed for real (by fixed test keys), then fields missing, retyped,
out of range or badly hex-encoded (`shaped_dict`), so a handler's paths past the format checks are
reached too.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from borgusb.clock import SystemClock
from borgusb.ledger import (
    RESERVE,
    ZERO_HASH,
    certify,
    hash_lock,
    set_digest,
    sign_acceptance,
    sign_claim,
    sign_lock,
    sign_refund,
    sign_reward,
    sign_transfer,
)
from borgusb.ledger.directory import key_hash
from borgusb.ledger.evidence import evidence_of
from borgusb.ledger.htlc import certify_resolution, sign_vote
from borgusb.ledger.skip import gather_skip

from .strategies import JSON_SMALL, fixed_key, hex_texts, safe_ints, shaped_dict, texts

PAYER, PAYEE, HOLDER = fixed_key("pay payer"), fixed_key("pay payee"), fixed_key("cell")
NOW = SystemClock().now_ms()
SET = set_digest([HOLDER.public_key_hex])  # the holder set the shapes' acceptances and votes name

TRANSFER = sign_transfer(PAYER, seq=1, prev=ZERO_HASH, to=PAYEE.public_key_hex, amount=150_000_000, ts=NOW)
REWARD = sign_reward(PAYEE, seq=1, prev=ZERO_HASH, amount=10**8, ref="ab" * 32, ts=NOW)
LATER = sign_transfer(PAYER, seq=2, prev=TRANSFER.id, to=PAYEE.public_key_hex, amount=1, ts=NOW)
CERT = certify(TRANSFER, [sign_acceptance(HOLDER, TRANSFER, SET)], SET).to_dict()
SECRET = bytes(range(32))
LOCK = sign_lock(
    PAYER,
    seq=1,
    prev=ZERO_HASH,
    to=PAYEE.public_key_hex,
    amount=10**8,
    hash_lock=hash_lock(SECRET),
    expiry=NOW + 60_000,
    ts=NOW,
)
CLAIM = sign_claim(PAYEE, LOCK, SECRET)
REFUND = sign_refund(PAYER, LOCK)
VOTE = sign_vote(HOLDER, CLAIM, SET).to_dict()
RES_CERT = certify_resolution(CLAIM, [sign_vote(HOLDER, CLAIM, SET)], SET).to_dict()

ACCOUNTS = st.sampled_from([PAYER.public_key_hex, PAYEE.public_key_hex, HOLDER.public_key_hex, RESERVE])
ACCOUNT_LIKE = st.one_of(ACCOUNTS, hex_texts, texts, JSON_SMALL)
INTS = st.one_of(st.integers(1, 5), safe_ints, st.sampled_from([0, -1, 2**53 - 1, True, None, "1", "1.0"]))


def _tx_fields(tx: dict[str, Any]) -> st.SearchStrategy[Any]:
    return shaped_dict(
        {
            "v": (st.just(tx["v"]), INTS),
            "account": (st.just(tx["account"]), ACCOUNT_LIKE),
            "seq": (st.just(tx["seq"]), INTS),
            "prev": (st.just(tx["prev"]), hex_texts),
            "to": (st.just(tx["to"]), ACCOUNT_LIKE),
            "amount": (st.just(tx["amount"]), INTS),
            "kind": (st.just(tx["kind"]), st.sampled_from(["reward", "htlc-lock", "x", ""]) | texts),
            "ref": (st.just(tx["ref"]), hex_texts),
            "ts": (st.just(tx["ts"]), INTS),
            "sig": (st.just(tx["sig"]), hex_texts),
        }
    )


TXS = st.one_of(
    st.sampled_from([TRANSFER.to_dict(), REWARD.to_dict(), LATER.to_dict(), LOCK.to_dict()]),
    _tx_fields(TRANSFER.to_dict()),
    _tx_fields(REWARD.to_dict()),
)
CERTS = st.one_of(
    st.just(CERT),
    shaped_dict(
        {
            "v": (st.just(2), INTS),
            "tx": (st.just(CERT["tx"]), TXS),
            "set": (st.just(SET), hex_texts),
            "sigs": (st.just(CERT["sigs"]), st.lists(shaped_dict({"holder": ACCOUNT_LIKE, "sig": hex_texts}))),
        }
    ),
)
ACCOUNT = shaped_dict({"account": (ACCOUNTS, ACCOUNT_LIKE)})


def _res_fields(res: dict[str, Any]) -> st.SearchStrategy[Any]:
    return shaped_dict(
        {
            "v": (st.just(1), INTS),
            "kind": (st.just(res["kind"]), st.sampled_from(["htlc-claim", "htlc-refund", "htlc-lock", ""]) | texts),
            "lock": (st.just(res["lock"]), TXS),
            "by": (st.just(res["by"]), ACCOUNT_LIKE),
            "preimage": (st.just(res["preimage"]), hex_texts),
            "sig": (st.just(res["sig"]), hex_texts),
        }
    )


RESOLUTIONS = st.one_of(
    st.sampled_from([CLAIM.to_dict(), REFUND.to_dict()]), _res_fields(CLAIM.to_dict()), _res_fields(REFUND.to_dict())
)
RES_CERTS = st.one_of(
    st.just(RES_CERT),
    shaped_dict(
        {
            "v": (st.just(2), INTS),
            "resolution": (st.just(RES_CERT["resolution"]), RESOLUTIONS),
            "set": (st.just(SET), hex_texts),
            "sigs": (st.just(RES_CERT["sigs"]), st.lists(shaped_dict({"holder": ACCOUNT_LIKE, "sig": hex_texts}))),
        }
    ),
)
OTHER = sign_transfer(PAYER, seq=1, prev=ZERO_HASH, to=HOLDER.public_key_hex, amount=1, ts=NOW)
EVIDENCE = evidence_of(sign_acceptance(HOLDER, TRANSFER, SET), sign_acceptance(HOLDER, OTHER, SET)).to_dict()
ACCEPTANCES = st.one_of(
    st.sampled_from([EVIDENCE["a"], EVIDENCE["b"]]),
    shaped_dict({k: (st.just(v), JSON_SMALL) for k, v in EVIDENCE["a"].items()}),
)
EVIDENCES = st.one_of(st.just(EVIDENCE), shaped_dict({"v": (st.just(1), INTS), "a": ACCEPTANCES, "b": ACCEPTANCES}))
H160S = st.sampled_from([key_hash(k.public_key_hex) for k in (PAYER, PAYEE, HOLDER)] + ["00" * 20])
SKIP = gather_skip(PAYER.public_key_hex, 1, ZERO_HASH, [sign_acceptance(HOLDER, TRANSFER, SET)]).to_dict()
SKIPS = st.one_of(
    st.just(SKIP),
    shaped_dict(
        {
            "v": (st.just(2), INTS),
            "skip": (st.just(SKIP["skip"]), JSON_SMALL),
            "accs": (st.just(SKIP["accs"]), st.lists(ACCEPTANCES, max_size=3)),
        }
    ),
)
LOCK_QUERY = shaped_dict({"account": (ACCOUNTS, ACCOUNT_LIKE), "lock": (st.just(LOCK.id), hex_texts)})

OFFER = shaped_dict({"tx": TXS, "view": (st.just(""), texts), "taken": (st.lists(ACCEPTANCES, max_size=3), JSON_SMALL)})

PAY_RECEPTORS: dict[str, st.SearchStrategy[Any]] = {
    "pay.accept": OFFER,
    "pay.accepts": shaped_dict({"offers": (st.lists(OFFER, min_size=1, max_size=4), JSON_SMALL)}),
    "pay.confirm": shaped_dict({"cert": st.one_of(CERTS, SKIPS)}),
    "pay.confirms": shaped_dict(
        {"certs": (st.lists(st.one_of(CERTS, SKIPS, JSON_SMALL), min_size=1, max_size=4), JSON_SMALL)}
    ),
    "pay.vote": shaped_dict({"account": (ACCOUNTS, ACCOUNT_LIKE), "seq": INTS}),
    "pay.views": shaped_dict({}),
    "pay.handover": shaped_dict(
        {"account": (ACCOUNTS, ACCOUNT_LIKE), "from": INTS, "view": (st.just("0" * 32), st.text(max_size=40))}
    ),
    "pay.verify": shaped_dict({"cert": st.one_of(CERTS, SKIPS)}),
    "pay.account": ACCOUNT,
    "pay.certs": shaped_dict({"account": (ACCOUNTS, ACCOUNT_LIKE), "from": INTS, "to": INTS}),
    "pay.send": shaped_dict({"tx": TXS}),
    "pay.balance": ACCOUNT,
    "pay.unsettled": ACCOUNT,
    "pay.history": ACCOUNT,
    "pay.resolve": shaped_dict(
        {
            "resolution": RESOLUTIONS,
            "view": (st.just(""), texts),
            "votes": (st.just([VOTE]), st.lists(shaped_dict({k: (st.just(v), JSON_SMALL) for k, v in VOTE.items()}))),
        }
    ),
    "pay.settle": shaped_dict({"cert": RES_CERTS}),
    "pay.handoff": shaped_dict(
        {
            "account": (ACCOUNTS, ACCOUNT_LIKE),
            "chain": st.lists(st.one_of(CERTS, SKIPS), max_size=3) | JSON_SMALL,
            "credits": st.lists(CERTS, max_size=3) | JSON_SMALL,
            "settled": st.lists(RES_CERTS, max_size=3) | JSON_SMALL,
        }
    ),
    "pay.lock": LOCK_QUERY,
    "pay.claim": shaped_dict({"resolution": RESOLUTIONS}),
    "pay.refund": shaped_dict({"resolution": RESOLUTIONS}),
    "pay.lock_status": LOCK_QUERY,
    "pay.evidence": shaped_dict({"have": (st.lists(ACCOUNTS, max_size=3), st.lists(ACCOUNT_LIKE, max_size=4))}),
    "pay.known": shaped_dict({"key": (ACCOUNTS, ACCOUNT_LIKE)}),
    "pay.whois": shaped_dict({"h160": (H160S, hex_texts), "local": (st.booleans(), JSON_SMALL)}),
}
PAY_BROADCASTS: dict[str, st.SearchStrategy[Any]] = {"payevidence": shaped_dict({"evidence": EVIDENCES})}
