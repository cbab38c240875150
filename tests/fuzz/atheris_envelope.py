"""Coverage-guided fuzzing of the one door with atheris (libFuzzer): run by test_envelope_fuzz.py.

    python -m tests.fuzz.atheris_envelope CORPUS_DIR -runs=N -seed=S   (from the checkout's root)

The kept corpus (tests/fuzz/corpus/envelope/) grew from valid envelopes signed for the verifier
below (test_envelope_fuzz.py's `valid_doc`, at its T0); libFuzzer mutates them, guided by the
coverage of `borgusb.canonical` and `borgusb.envelope`. Each input
must be a value `loads_canonical` gives back byte for byte, or `CanonicalError`; and for
`Verifier.verify`, an envelope and one "accepted", or an `EnvelopeError` with a known reason,
counted exactly once. Anything else is a crash, which libFuzzer reports with the input.
"""

from __future__ import annotations

import hashlib

import atheris

with atheris.instrument_imports(include=["borgusb"]):
    from borgusb import canonical, envelope
    from borgusb.clock import ManualClock
    from borgusb.keys import SigningKey

from .libfuzzer import fuzzer_argv

# the same derivation as tests/fuzz/strategies.fixed_key("verifier") and the test's T0 and ports
ME = SigningKey(hashlib.sha256(b"borgusb fuzz key verifier").digest()).public_key_hex
PORTS = (13350, 13351, 13352)
T0 = 1_764_000_000_000


def test_one_input(data: bytes) -> None:
    try:
        value = canonical.loads_canonical(data)
    except canonical.CanonicalError:
        pass
    else:
        canonical.check(value)
        assert canonical.encode_unchecked(value) == data
    verifier = envelope.Verifier(ManualClock(T0))
    verifier.answer_to(ME, PORTS)
    try:
        verifier.verify(data, broadcast_types=("tree.broadcast",))
    except envelope.EnvelopeError as exc:
        assert exc.reason in envelope.REASONS, exc.reason
        assert counted(verifier) == {exc.reason: 1}, verifier.counters
    else:
        assert counted(verifier) == {"accepted": 1}, verifier.counters


def counted(verifier: envelope.Verifier) -> dict[str, int]:
    """The verifier's counters that moved (every reason is there from the start, at 0)."""
    return {reason: n for reason, n in verifier.counters.items() if n}


def main() -> None:
    atheris.Setup(fuzzer_argv(__spec__.name), test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
