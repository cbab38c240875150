"""borgusb.mail without I/O: messages (sealed, signed, bound), recipient requests, the inbox's rules, the merge."""

from __future__ import annotations

import hashlib

import pytest

from borgusb.keys import SigningKey
from borgusb.mail import errors
from borgusb.mail.inbox import Inbox, Limits, handoffs, merge
from borgusb.mail.message import DOMAIN, Content, check_message, compose, open_message, parse_message
from borgusb.mail.request import check_request, sign_request
from borgusb.signed import signing_bytes

T = 1_764_000_000_000


def key(label: str) -> SigningKey:
    return SigningKey(hashlib.sha256(label.encode()).digest())


A, B, C = key("mail a"), key("mail b"), key("mail c")


def msg(sender: SigningKey = A, to: SigningKey = B, ts: int = T, subject: str = "hello", re_id: str = ""):
    return compose(sender, to.public_key_hex, Content(subject, "the body", ()), ts, re_id)


def test_only_the_recipient_opens_and_the_subject_is_sealed() -> None:
    m = msg(subject="secret subject")
    assert b"secret" not in m.encode() and b"the body" not in m.encode()
    assert open_message(B, parse_message(m.encode())) == Content("secret subject", "the body", ())
    with pytest.raises(errors.NotForYou):
        open_message(C, m)
    # C pretending the message is theirs: the box is sealed to B's key, so C's key cannot open it
    forged_for_c = check_message(m.to_dict())
    object.__setattr__(forged_for_c, "recipient", C.public_key_hex)
    with pytest.raises(errors.Undecryptable):
        open_message(C, forged_for_c)


@pytest.mark.parametrize("field", ["sealed", "ts", "re", "to", "from"])
def test_tampered_message_refused(field: str) -> None:
    doc = msg().to_dict()
    doc[field] = {
        "sealed": doc["sealed"][:-2] + ("00" if doc["sealed"][-2:] != "00" else "01"),
        "ts": T + 1,
        "re": "ab" * 32,
        "to": C.public_key_hex,
        "from": C.public_key_hex,
    }[field]
    with pytest.raises(errors.BadSignature):
        check_message(doc)


def test_forged_sender_and_lifted_box_refused() -> None:
    """C re-signs A's sealed words as C's own: the signature is C's, but the box is bound to A."""
    original = msg()
    body = dict(original.to_dict(), **{"from": C.public_key_hex})
    del body["sig"]
    lifted = check_message(dict(body, sig=C.sign(signing_bytes(body, DOMAIN)).hex()))
    with pytest.raises(errors.Undecryptable):
        open_message(B, lifted)
    # C signs a message claiming A sent it: no A signature, refused
    claim = dict(msg(sender=C).to_dict(), **{"from": A.public_key_hex})
    with pytest.raises(errors.BadSignature):
        check_message(claim)


def test_bounds_and_malformed() -> None:
    with pytest.raises(errors.TooLarge):
        compose(A, B.public_key_hex, Content("s", "x" * 60_000), T)
    with pytest.raises(errors.Malformed):
        parse_message(b'{"v":1}')
    with pytest.raises(errors.TooLarge):
        parse_message(b" " * 200_000)
    with pytest.raises(errors.Malformed):
        compose(A, "not a key", Content("s", "b"), T)
    with pytest.raises(errors.Malformed):
        Content.decode(b'{"a":1}')


def test_reply_threads_and_ids() -> None:
    first = msg()
    reply = msg(sender=B, to=A, re_id=first.id)
    assert reply.re == first.id and open_message(A, reply).subject == "hello"
    again = msg()
    assert again.sealed != first.sealed and again.id != first.id  # a fresh box per message, so a fresh id
    assert check_message(first.to_dict()).id == first.id


def test_requests_signed_by_the_owner_and_fresh() -> None:
    q = sign_request(B, "rm", ["ab" * 32], T)
    assert check_request(q, T + 1000).who == B.public_key_hex
    with pytest.raises(errors.BadSignature):
        check_request(dict(q, who=C.public_key_hex), T)
    with pytest.raises(errors.Stale):
        check_request(q, T + 10 * 60_000)
    with pytest.raises(errors.FutureDated):
        check_request(q, T - 60_000)
    with pytest.raises(errors.Malformed):
        check_request(dict(q, op="drop"), T)


def test_inbox_dedup_tombstone_rate_size_and_known_senders() -> None:
    inbox = Inbox(B.public_key_hex, Limits(max_messages=5, rate_count=3))
    m = msg()
    assert inbox.deposit(T, m) == "stored"
    assert inbox.deposit(T + 5, m) == "duplicate"  # a replay is kept once
    with pytest.raises(errors.NotForYou):
        inbox.deposit(T, msg(to=C))
    with pytest.raises(errors.Stale):
        inbox.deposit(T + 11 * 60_000, msg(ts=T))
    with pytest.raises(errors.FutureDated):
        inbox.deposit(T, msg(ts=T + 60_000))
    inbox.deposit(T, msg(subject="2"))
    inbox.deposit(T, msg(subject="3"))
    with pytest.raises(errors.RateLimited):
        inbox.deposit(T, msg(subject="4"))
    assert inbox.deposit(T + 60_000, msg(ts=T + 60_000, subject="4")) == "stored"  # the window moved on
    assert inbox.deposit(T, msg(sender=C)) == "stored"
    with pytest.raises(errors.InboxFull):
        inbox.deposit(T, msg(sender=key("d")))
    # read makes the sender known; rm leaves a tombstone that refuses the replay
    inbox.apply(T, check_request(sign_request(B, "read", [m.id], T), T))
    assert m.id in inbox.read and A.public_key_hex in inbox.known
    inbox.apply(T, check_request(sign_request(B, "rm", [m.id], T), T))
    with pytest.raises(errors.Deleted):
        inbox.deposit(T + 1, m)
    inbox.prune(T + 11 * 60_000)  # the tombstone goes once a replay would be stale anyway
    with pytest.raises(errors.Stale):
        inbox.deposit(T + 11 * 60_000, m)
    again = Inbox.from_doc(inbox.to_doc(), inbox.limits)
    assert again.listing() == inbox.listing()


def test_merge_unions_dedups_and_drops_lies() -> None:
    m1, m2, m3 = msg(subject="1"), msg(subject="2", ts=T + 1), msg(sender=C, subject="3", ts=T + 2)
    bad = dict(m3.to_dict(), ts=T + 9)
    h1 = {"messages": [m1.to_dict(), m2.to_dict()], "read": [m1.id], "deleted": [], "known": [A.public_key_hex]}
    h2 = {"messages": [m2.to_dict(), m3.to_dict(), bad, msg(to=C).to_dict()], "read": [], "deleted": [m2.id]}
    entries, dropped = merge(B.public_key_hex, [h1, h2, "garbage"])
    assert [e.msg.id for e in entries] == [m1.id, m3.id]
    assert dropped == 3
    assert entries[0].read and not entries[0].new_sender
    assert not entries[1].read and entries[1].new_sender


def test_handoff_catches_a_new_holder_up_but_not_past_a_delete() -> None:
    m1, m2, m3 = msg(subject="1"), msg(subject="2"), msg(subject="3")
    old1 = {"holder": "h1", "messages": [m1.to_dict(), m2.to_dict(), m3.to_dict()], "deleted": []}
    old2 = {"holder": "h2", "messages": [m1.to_dict(), m2.to_dict()], "deleted": [m3.id]}
    new = {"holder": "h3", "messages": [], "deleted": []}
    lying = {"holder": "h4", "messages": [dict(m1.to_dict(), ts=T + 5), msg(to=C).to_dict()]}
    got = handoffs(B.public_key_hex, [old1, old2, new, lying])
    assert sorted((h, d["sealed"]) for h, d in got) == sorted(
        (h, m.sealed) for h in ("h3", "h4") for m in (m1, m2)
    )  # m3 was deleted on h2: nobody gets it back; the lying holder's items are not passed on
    assert len(handoffs(B.public_key_hex, [old1, new], limit=1)) == 1
    # a hand-off may be old and over the rate, but a tombstone still refuses it
    inbox = Inbox(B.public_key_hex, Limits(rate_count=1))
    later = T + 60 * 60_000
    assert inbox.deposit(later, m1, handoff=True) == "stored"
    assert inbox.deposit(later, m2, handoff=True) == "stored"
    with pytest.raises(errors.Stale):
        inbox.deposit(later, m3)
    inbox.apply(later, check_request(sign_request(B, "rm", [m3.id], later), later))
    with pytest.raises(errors.Deleted):
        inbox.deposit(later, m3, handoff=True)
