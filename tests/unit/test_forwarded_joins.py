"""A forwarded join is placed only with its joiner's own signed join (cells/kit/joins.py): a placed
member cannot ask the root to place keys that never asked."""

from __future__ import annotations

from typing import Any

import pytest

from borgusb import envelope
from borgusb.cells.kit.joins import ForwardedJoins, JoinForged
from borgusb.clock import ManualClock
from borgusb.keys import SigningKey
from borgusb.tree.messages import Member

PORT = 13362
MEMBER, ROOT = SigningKey.generate(), SigningKey.generate()


@pytest.fixture
def clock() -> ManualClock:
    """Each test its own clock: the stale-join test moves its clock on."""
    return ManualClock(1_800_000_000_000)


def join_of(
    clock: ManualClock, joiner: SigningKey, to: SigningKey, *, signer: SigningKey | None = None, hops: int = 0
) -> dict[str, Any]:
    """A joiner's own join (hops 0) as it reached the member ``to``; ``signer`` forges it."""
    record = Member(joiner.public_key_hex, "10.0.0.7", PORT).to_dict()
    payload = {"t": "tree.join", "joiner": record, "hops": hops}
    return envelope.sign(
        signer or joiner,
        "tree.join",
        payload,
        clock,
        ip="10.0.0.7",
        port=PORT,
        to=envelope.address(to.public_key_hex, PORT),
    )


def forward(
    clock: ManualClock, inner: dict[str, Any] | None, joiner: dict[str, Any]
) -> tuple[envelope.Envelope, dict[str, Any]]:
    """The member's forward to the root, as the root's door has verified it."""
    msg: dict[str, Any] = {"t": "tree.join", "joiner": joiner, "hops": 1}
    if inner is not None:
        msg["signed"] = inner
    root_verifier = envelope.Verifier(clock)
    root_verifier.answer_to(ROOT.public_key_hex, [PORT])
    outer = envelope.sign(
        MEMBER, "tree.join", msg, clock, ip="10.0.0.2", port=PORT, to=envelope.address(ROOT.public_key_hex, PORT)
    )
    return root_verifier.verify(envelope.encode(outer)), msg


def test_a_joiners_own_join_forwarded_once_is_proven(clock: ManualClock) -> None:
    joins = ForwardedJoins(clock)
    joiner = SigningKey.generate()
    inner = join_of(clock, joiner, MEMBER)
    assert joins.proven(*forward(clock, inner, inner["payload"]["joiner"]))
    # the same join forwarded again (by this member or any other) is a replay
    assert not joins.proven(*forward(clock, inner, inner["payload"]["joiner"]))
    assert joins.verifier.counters["replay"] == 1


def test_made_up_joiners_are_refused(clock: ManualClock) -> None:
    joins = ForwardedJoins(clock)
    joiner, other_member = SigningKey.generate(), SigningKey.generate()
    record = Member(joiner.public_key_hex, "10.0.0.7", PORT).to_dict()
    assert not joins.proven(*forward(clock, None, record)), "no proof at all"
    forged = join_of(clock, joiner, MEMBER, signer=MEMBER)  # the member signs a join naming another key
    assert not joins.proven(*forward(clock, forged, forged["payload"]["joiner"]))
    elsewhere = join_of(clock, joiner, other_member)  # a real join, but sent to another member
    assert not joins.proven(*forward(clock, elsewhere, elsewhere["payload"]["joiner"]))
    own = join_of(clock, joiner, MEMBER)
    moved = {**own["payload"]["joiner"], "ip": "10.9.9.9"}  # the joiner's record changed on the way
    assert not joins.proven(*forward(clock, own, moved))
    hop1 = join_of(clock, joiner, MEMBER, hops=1)  # a forward of a forward
    assert not joins.proven(*forward(clock, hop1, hop1["payload"]["joiner"]))
    tampered = join_of(clock, SigningKey.generate(), MEMBER)
    tampered["payload"] = {**tampered["payload"], "hops": 0, "joiner": record}  # its signature no longer holds
    assert not joins.proven(*forward(clock, tampered, record))
    assert joins.verifier.counters["bad_signature"] == 1


def test_a_stale_join_is_refused(clock: ManualClock) -> None:
    joins = ForwardedJoins(clock)
    inner = join_of(clock, SigningKey.generate(), MEMBER)
    clock.advance(envelope.DEFAULT_WINDOW_MS + 1_000)
    assert not joins.proven(*forward(clock, inner, inner["payload"]["joiner"]))
    assert joins.verifier.counters["stale"] == 1


def test_what_the_tree_gets_with_each_message(clock: ManualClock) -> None:
    """The door's one call (`Cell._handle_net`): a joiner's own join goes on with its envelope, a
    forwarded one only with its proof, any other message with nothing."""
    joins = ForwardedJoins(clock)
    inner = join_of(clock, SigningKey.generate(), MEMBER)
    member_verifier = envelope.Verifier(clock)
    member_verifier.answer_to(MEMBER.public_key_hex, [PORT])
    own = member_verifier.verify(envelope.encode(inner))
    assert joins.proof_of(own, own.payload) == inner  # the member keeps it, to pass on
    outer, msg = forward(clock, inner, inner["payload"]["joiner"])
    assert joins.proof_of(outer, msg) == outer.to_dict()
    bare, bare_msg = forward(clock, None, inner["payload"]["joiner"])
    with pytest.raises(JoinForged):
        joins.proof_of(bare, bare_msg)
    to_root = envelope.address(ROOT.public_key_hex, PORT)
    hb = envelope.sign(MEMBER, "tree.hb", {"t": "tree.hb"}, clock, port=PORT, to=to_root)
    root_verifier = envelope.Verifier(clock)
    root_verifier.answer_to(ROOT.public_key_hex, [PORT])
    assert joins.proof_of(root_verifier.verify(envelope.encode(hb)), {"t": "tree.hb"}) is None
