"""Property tests over the pure core: no double confirmation, whatever the order; supply conserved
(hash-time locks included: at most one resolution per lock, and a lock's units are nobody's until then).

Holders are real `Holder`s joined by `sim.Network`; hypothesis chooses who
receives what, in which order, and what is lost.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from borgusb.ledger import (
    RESERVE,
    SUPPLY,
    ZERO_HASH,
    Acceptance,
    Balance,
    Certificate,
    ResolutionCertificate,
    Tx,
    certify,
    hash_lock,
    set_digest,
    sign_claim,
    sign_lock,
    sign_refund,
    sign_reward,
    sign_transfer,
)
from borgusb.ledger.accounts import genesis_balance
from borgusb.ledger.errors import LedgerError
from borgusb.ledger.htlc import Vote
from borgusb.ledger.sim import Network, fixed_key

NOW = 1_764_000_000_000
SHELL = 10**8
FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# ------------------------------------------------------------------ 50 conflicting spends, 5 holders

NODES5 = [fixed_key(f"prop node {i}") for i in range(5)]
PAYER = fixed_key("prop payer")
PAYEES = [fixed_key(f"prop payee {i}") for i in range(50)]
FUNDING = sign_reward(PAYER, seq=1, prev=ZERO_HASH, amount=10 * SHELL, ref="ab" * 32, ts=NOW)
# every one of them alone is affordable: only the one-vote rule can stop two of them
SPENDS = [
    sign_transfer(PAYER, seq=1, prev=ZERO_HASH, to=p.public_key_hex, amount=(i % 10 + 1) * SHELL, ts=NOW + i)
    for i, p in enumerate(PAYEES)
]


def _funded5() -> Network:
    net = Network(NODES5)
    accs, _ = net.submit(FUNDING, NOW)
    cert = net.certify(FUNDING, accs)
    assert cert is not None and net.deliver(cert) == {}
    return net


def _offer_orders() -> st.SearchStrategy[list[tuple[int, int]]]:
    """Every (spend, holder) offer once, in an order hypothesis picks: either a uniform shuffle, or a race
    where each holder first sees one of a few spends (so a quorum for one of them is likely)."""
    every = [(t, h) for t in range(len(SPENDS)) for h in range(5)]
    race = st.tuples(
        st.lists(st.integers(0, 2), min_size=5, max_size=5), st.permutations(every), st.permutations(range(5))
    ).map(lambda x: [(x[0][h], h) for h in x[2]] + x[1])
    return st.one_of(st.permutations(every), race)


@FAST
@given(order=_offer_orders(), lost=st.integers(0, len(SPENDS) * 5))
def test_fifty_conflicting_spends_at_most_one_certified(order: list[tuple[int, int]], lost: int) -> None:
    net = _funded5()
    holders = list(net.sets.of(PAYER.public_key_hex))
    assert len(holders) == 5
    votes: dict[int, set[Acceptance]] = defaultdict(set)
    delivered = order[: len(order) - lost]  # any interleaving; the last `lost` offers never arrive
    for t, h in delivered:
        got = net.offer(SPENDS[t], holders[h], NOW + 100)
        if not isinstance(got, LedgerError):
            votes[t].add(got)  # a replay gives back the very same acceptance
        else:
            assert got.reason == "conflicting_spend"
    signers = [a.holder for v in votes.values() for a in v]
    assert len(signers) == len(set(signers)) <= 5  # each holder signed at most one of the fifty
    certs = [c for t in votes if (c := net.certify(SPENDS[t], votes[t])) is not None]
    assert len(certs) <= 1
    event(f"certified: {len(certs)}")
    # even pooling every acceptance anyone ever got cannot certify a second one
    everything = [a for v in votes.values() for a in v]
    assert sum(net.certify(tx, everything) is not None for tx in SPENDS) == len(certs)
    if lost == 0:
        assert sum(len(v) for v in votes.values()) == 5  # every holder voted for the first it saw
    if certs:  # and the holders that voted otherwise follow the winner once they see its certificate
        assert net.deliver(certs[0]) == {}
        read = net.read(PAYER.public_key_hex)
        assert isinstance(read, Balance) and read.balance == 10 * SHELL - certs[0].tx.amount


# ------------------------------------------------------------------ random operation sequences

NODES7 = [fixed_key(f"prop7 node {i}") for i in range(7)]
USERS = [fixed_key(f"prop user {i}") for i in range(4)]
USERS_BY_KEY = {u.public_key_hex: u for u in USERS}


@dataclass
class Wallet:
    """What a payer knows of its own chain: the last certified position and a transaction in flight."""

    seq: int = 0
    prev: str = ZERO_HASH
    pending: Tx | None = None


def _op() -> st.SearchStrategy[tuple]:
    # which of the payer's five holders a transaction reaches: often all (so chains grow), often not
    subset = st.one_of(st.permutations(range(5)), st.lists(st.integers(0, 4), unique=True, max_size=5))
    # a hash-time lock (a transfer's fields plus its lifetime in steps), and a claim or a refund of some lock
    # offered when each holder's clock reads the lock's expiry + its own delta (so claims race refunds)
    lock = st.tuples(
        st.just("lock"),
        st.integers(0, 3),
        st.integers(1, 3),
        st.integers(1, 15),
        subset,
        st.booleans(),
        st.integers(1, 12),
    )
    resolve = st.tuples(
        st.sampled_from(["claim", "refund"]),
        st.integers(0, 200),
        subset,
        st.booleans(),
        st.lists(st.integers(-3, 3), min_size=5, max_size=5),
    )
    return st.one_of(
        # the last member: whether the certificate, if one forms, is sent at once to every holder concerned
        st.tuples(st.just("reward"), st.integers(0, 3), st.integers(1, 20), subset, st.booleans()),
        st.tuples(st.just("transfer"), st.integers(0, 3), st.integers(1, 3), st.integers(1, 15), subset, st.booleans()),
        # a double spend: a second transaction for the payer's next sequence number, to other holders
        st.tuples(st.just("rival"), st.integers(0, 3), st.integers(1, 3), st.integers(1, 15), subset, st.booleans()),
        st.tuples(st.just("deliver"), st.integers(0, 200), st.lists(st.integers(0, 6), unique=True, max_size=7)),
        lock,
        lock,
        resolve,
        resolve,
        resolve,
    )


GRACE = 2  # the holders' refund grace, in the test's time steps (ms)


def _truth(
    certs: list[Certificate], accounts: list[str], resolved: Sequence[ResolutionCertificate] = ()
) -> dict[str, int]:
    """Balances from the certificates alone: genesis, minus what each certified spend took, plus what it gave
    (a lock gives nothing: its resolution gives the claimant, or the payer back)."""
    bal = {a: genesis_balance(a) for a in accounts}
    for cert in certs:
        bal[cert.tx.account] -= cert.tx.amount
        if cert.tx.kind != "htlc-lock":
            bal[cert.tx.to] += cert.tx.amount
    for rc in resolved:
        bal[rc.resolution.beneficiary] += rc.resolution.lock.amount
    return bal


def _secret(ts: int) -> bytes:
    return hashlib.sha256(f"prop secret {ts}".encode()).digest()


@FAST
@given(ops=st.lists(_op(), min_size=3, max_size=30), flush=st.randoms(use_true_random=False))
def test_supply_is_conserved_and_reads_converge(ops: list[tuple], flush: random.Random) -> None:
    net = Network(NODES7, htlc_grace_ms=GRACE)
    wallets = {a: Wallet() for a in [RESERVE, *(u.public_key_hex for u in USERS)]}
    accounts = list(wallets)
    made: dict[str, Certificate] = {}  # every certificate ever formed, by tx id
    resolved: list[ResolutionCertificate] = []  # every resolution certificate ever formed
    ts = NOW

    def offer(tx: Tx, offered: list[int], spread: bool) -> None:
        holders = net.sets.of(tx.account)
        net.submit(tx, ts, [holders[i] for i in offered])
        # the strongest payer: it pools every acceptance any holder ever gave for this transaction
        got = [h.state.votes.get((tx.account, tx.seq)) for h in net.holders.values()]
        cert = net.certify(tx, [a for a in got if a is not None and a.id == tx.id])
        w = wallets[tx.account]
        if cert is not None:
            made[tx.id] = cert
            if spread:
                net.deliver(cert)  # refusals (gaps, for instance) are fine: the heal below sends all again
            if tx.seq == w.seq + 1:
                w.seq, w.prev, w.pending = tx.seq, tx.id, None

    for i, user in enumerate(USERS):  # every user starts with a certified reward of 20 Shells, credited everywhere
        w = wallets[RESERVE]
        w.pending = sign_reward(user, seq=i + 1, prev=w.prev, amount=20 * SHELL, ref=f"{i:064x}", ts=ts)
        offer(w.pending, list(range(5)), True)
    assert wallets[RESERVE].seq == len(USERS)

    for op in ops:
        ts += 1
        if op[0] == "reward":
            _, who, shells, offered, spread = op
            w = wallets[RESERVE]
            w.pending = w.pending or sign_reward(
                USERS[who], seq=w.seq + 1, prev=w.prev, amount=shells * SHELL, ref=f"{ts:064x}", ts=ts
            )
            offer(w.pending, offered, spread)  # a claim in flight is retried as it is, never re-signed
        elif op[0] in ("transfer", "rival", "lock"):
            _, payer, step, shells, offered, spread = op[:6]
            key, payee = USERS[payer], USERS[(payer + step) % 4]
            w = wallets[key.public_key_hex]
            fresh = (
                sign_lock(
                    key,
                    seq=w.seq + 1,
                    prev=w.prev,
                    to=payee.public_key_hex,
                    amount=shells * SHELL,
                    hash_lock=hash_lock(_secret(ts)),
                    expiry=ts + op[6],
                    ts=ts,
                )
                if op[0] == "lock"
                else sign_transfer(
                    key, seq=w.seq + 1, prev=w.prev, to=payee.public_key_hex, amount=shells * SHELL, ts=ts
                )
            )
            if op[0] == "rival" or w.pending is None:
                w.pending = w.pending or fresh
                offer(fresh, offered, spread)
            else:
                offer(w.pending, offered, spread)
        elif op[0] in ("claim", "refund"):
            locks = [c.tx for c in made.values() if c.tx.kind == "htlc-lock"]
            if locks:
                _, which, offered, spread, deltas = op
                lock = locks[which % len(locks)]
                res = (
                    sign_claim(USERS_BY_KEY[lock.to], lock, _secret(lock.ts))
                    if op[0] == "claim"
                    else sign_refund(USERS_BY_KEY[lock.account], lock)
                )
                holders = net.sets.of(lock.account)
                if spread:  # the entry cell's catch-up: the payer's certified chain up to the lock, in order
                    chain = sorted((c for c in made.values() if c.tx.account == lock.account), key=lambda c: c.tx.seq)
                    for c in chain[: lock.seq]:
                        net.deliver(c, [holders[i] for i in offered])
                for i in offered:  # each holder's clock near the expiry, off by its own amount
                    net.resolve(res, lock.expiry + deltas[i], [holders[i]])
                got = [h.state.res_votes.get(lock.id) for h in net.holders.values()]
                rc = net.certify_resolution(res, [v for v in got if v is not None and v.id == res.id])
                if rc is not None:
                    if all(r.resolution.id != res.id for r in resolved):
                        resolved.append(rc)
                    if spread:
                        net.settle(rc)
        elif made:
            _, which, targets = op
            cert = list(made.values())[which % len(made)]
            net.deliver(cert, [NODES7[i].public_key_hex for i in targets])
            if resolved:
                net.settle(resolved[which % len(resolved)], [NODES7[i].public_key_hex for i in targets])

        # at every step: one certificate per (account, seq); certified spends never overdraw; supply fixed
        per_seq = Counter((c.tx.account, c.tx.seq) for c in made.values())
        assert all(n == 1 for n in per_seq.values()), "two certificates for one (account, seq)"
        per_lock = Counter(rc.resolution.lock.id for rc in resolved)
        assert all(n == 1 for n in per_lock.values()), "two resolutions certified for one lock"
        truth = _truth(list(made.values()), accounts, resolved)
        open_locks = sum(c.tx.amount for c in made.values() if c.tx.kind == "htlc-lock" and c.tx.id not in per_lock)
        assert sum(truth.values()) + open_locks == SUPPLY  # locked units are nobody's, and not lost
        assert all(v >= 0 for v in truth.values()), "a certified spend overdrew its account"

    # heal: every certificate reaches every holder, each chain in order, accounts interleaved at random
    certs = list(made.values())
    flush.shuffle(certs)
    certs.sort(key=lambda c: c.tx.seq)
    for cert in certs:
        assert net.deliver(cert) == {}
    for rc in resolved:
        assert net.settle(rc) == {}
    event(f"certificates: {len(certs)}, resolutions: {len(resolved)}")
    truth = _truth(certs, accounts, resolved)
    for a in accounts:
        read = net.read(a)
        assert isinstance(read, Balance), read
        assert read.balance == truth[a] and len(read.holders) == 5  # every holder agrees
    open_locks = {c.tx.id: c.tx for c in certs if c.tx.kind == "htlc-lock"}
    for rc in resolved:
        open_locks.pop(rc.resolution.lock.id)
    assert sum(truth.values()) + sum(t.amount for t in open_locks.values()) == SUPPLY
    for h in net.holders.values():
        for lock in open_locks.values():  # every holder of the payer says the same of each lock
            if h.holds(lock.account):
                assert h.lock_answer(lock).state == "open"
        for rc in resolved:
            if h.holds(rc.resolution.lock.account):
                assert h.lock_answer(rc.resolution.lock).says[1] == rc.resolution.id
        for a in accounts:
            if h.holds(a):
                assert h.available(a) <= h.balance(a)  # spends in flight only ever lower what can be spent
        for chain in h.state.chains.values():  # the running sums kept by `apply` equal a full recount
            kept = (chain.spent, chain.spent_confirmed, dict(chain.refs))
            chain.recount()
            assert kept == (chain.spent, chain.spent_confirmed, chain.refs)


def test_certify_ignores_acceptances_of_other_transactions() -> None:
    net = _funded5()
    holders = list(net.sets.of(PAYER.public_key_hex))
    a, b = SPENDS[0], SPENDS[1]
    votes = [net.offer(a, h, NOW) for h in holders[:2]] + [net.offer(b, h, NOW) for h in holders[2:]]
    assert net.certify(a, votes) is None  # b's three acceptances do not count for a
    cert = certify(b, votes, set_digest(k.public_key_hex for k in NODES5))
    assert len(cert.sigs) == 3 and net.certify(b, votes) is not None


# ------------------------------------------------------------------ a claim racing a refund at the expiry

SECRET = hashlib.sha256(b"prop race secret").digest()
EXPIRY = NOW + 60_000


@FAST
@given(
    claim_at=st.lists(st.integers(-3, 3), min_size=5, max_size=5),
    refund_at=st.lists(st.integers(-3, 3), min_size=5, max_size=5),
    claim_first=st.lists(st.booleans(), min_size=5, max_size=5),
    faulty=st.integers(0, 1),
    yield_to_claim=st.booleans(),
)
def test_claim_racing_refund_at_most_one_resolution(
    claim_at: list[int], refund_at: list[int], claim_first: list[bool], faulty: int, yield_to_claim: bool
) -> None:
    """Each holder's clock reads the expiry give or take a few ms, and sees the claim and the refund in
    its own order: at most one of them is certified, and the lock's units end up with exactly one side."""
    net = Network(NODES5, faulty=faulty, htlc_grace_ms=GRACE)
    accs, _ = net.submit(FUNDING, NOW)
    funded = net.certify(FUNDING, accs)
    assert funded is not None and net.deliver(funded) == {}
    payee = PAYEES[0]
    lock = sign_lock(
        PAYER,
        seq=1,
        prev=ZERO_HASH,
        to=payee.public_key_hex,
        amount=4 * SHELL,
        hash_lock=hash_lock(SECRET),
        expiry=EXPIRY,
        ts=NOW,
    )
    accs, _ = net.submit(lock, NOW)
    locked = net.certify(lock, accs)
    assert locked is not None and net.deliver(locked) == {}
    claim, refund = sign_claim(payee, lock, SECRET), sign_refund(PAYER, lock)
    given: list[Vote] = []  # every vote a holder gave in the race
    for i, h in enumerate(net.sets.of(lock.account)):
        offers = [(claim, EXPIRY + claim_at[i]), (refund, EXPIRY + refund_at[i])]
        for res, now in offers if claim_first[i] else offers[::-1]:
            given += net.resolve(res, now, [h])[0]
    votes = [v for h in net.holders.values() if (v := h.state.res_votes.get(lock.id)) is not None]
    if yield_to_claim:  # the claimant resends its claim with every claim vote it got as proof
        net.resolve(claim, EXPIRY + 10, proof=[v for v in votes if v.id == claim.id])
        votes = [v for h in net.holders.values() if (v := h.state.res_votes.get(lock.id)) is not None]
        votes += [v for v in given if v.id == refund.id]  # a refund vote given earlier stays signed
    certs = [c for r in (claim, refund) if (c := net.certify_resolution(r, votes)) is not None]
    assert len(certs) <= 1
    event(f"resolved: {certs[0].resolution.kind if certs else 'none'}")
    for rc in certs:
        assert net.settle(rc) == {}
    after = net.read(PAYER.public_key_hex), net.read(payee.public_key_hex)
    assert isinstance(after[0], Balance) and isinstance(after[1], Balance)
    assert after[0].balance + after[1].balance + (0 if certs else lock.amount) == 10 * SHELL
