"""`borgusb.fstream.viewer`: the header that says who pays for one fStream response proves it only for
that request (object and Range), at that one cell, once; anything else is refused with its reason."""

from __future__ import annotations

import pytest

from borgusb import envelope
from borgusb.clock import ManualClock
from borgusb.fstream.viewer import MAX_BYTES, TYPE, BadViewer, check_viewer, sign_viewer
from borgusb.ledger.sim import fixed_key

CLOCK = ManualClock()
CELL = fixed_key("fstream cell")
OTHER = fixed_key("another fstream cell")
VIEWER = fixed_key("a viewer")
PORT = 40_203
OID = "ab" * 32


def door(node=CELL) -> envelope.Verifier:
    verifier = envelope.Verifier(CLOCK)
    verifier.answer_to(node.public_key_hex, (PORT,))
    return verifier


def reason(verifier: envelope.Verifier, value: str, oid: str = OID, rng: str = "bytes=0-99") -> str:
    with pytest.raises(BadViewer) as err:
        check_viewer(verifier, value, oid, rng)
    return err.value.reason


def test_a_header_proves_its_signer_once_for_its_request_at_its_cell() -> None:
    verifier = door()
    value = sign_viewer(VIEWER, CLOCK, CELL.public_key_hex, PORT, OID, "bytes=0-99")
    assert check_viewer(verifier, value, OID, "bytes=0-99") == VIEWER.public_key_hex
    assert reason(verifier, value) == "viewer_replay"  # seen on the wire, it is spent
    assert reason(door(OTHER), value) == "viewer_wrong_recipient"  # and works at no other cell
    fresh = sign_viewer(VIEWER, CLOCK, CELL.public_key_hex, PORT, OID, "bytes=0-99")
    assert reason(door(), fresh, rng="bytes=0-199") == "viewer_mismatch"  # another range
    fresh = sign_viewer(VIEWER, CLOCK, CELL.public_key_hex, PORT, OID, "")
    assert reason(door(), fresh, oid="cd" * 32, rng="") == "viewer_mismatch"  # another object
    assert check_viewer(door(), fresh, OID, "") == VIEWER.public_key_hex  # no Range: the whole object


def test_forged_foreign_and_oversized_headers_are_refused_with_their_reason() -> None:
    body = envelope.sign(VIEWER, TYPE, {"oid": OID, "range": ""}, CLOCK, to=envelope.address(CELL.public_key_hex, PORT))
    body["payload"]["range"] = "bytes=0-"
    assert reason(door(), envelope.encode(body).decode(), rng="bytes=0-") == "viewer_bad_signature"
    other = envelope.sign(VIEWER, "shard.get", {"oid": OID}, CLOCK, to=envelope.address(CELL.public_key_hex, PORT))
    assert reason(door(), envelope.encode(other).decode()) == "viewer_wrong_type"
    assert reason(door(), "{" * 10) == "viewer_malformed"
    assert reason(door(), "x" * (MAX_BYTES + 1)) == "viewer_too_large"
