"""Envelope sign/s and verify/s against raw libsecp256k1 verify/s, measured in one run.

Goal: envelope verify ≥ 0.6 × raw verify (the envelope's parsing, canonical
form, freshness and replay checks cost less than the signature itself).
"""

from __future__ import annotations

import time

from coincurve import PrivateKey

from borgusb import envelope
from borgusb.clock import SystemClock
from borgusb.keys import SigningKey

N = 5000
GOAL = 0.6


ROUNDS = 5


def rate(fn, n: int = N) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def best_of(fns: dict, rounds: int = ROUNDS) -> dict[str, float]:
    """Best rate of each, measured in alternating rounds so machine noise hits all alike."""
    best = {name: 0.0 for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = max(best[name], fn())
    return best


def main() -> dict[str, float]:
    clock = SystemClock()
    key = SigningKey.generate()
    payload = {"t": "tree.hb", "tree": "5f0c" * 8, "pos": 17, "size": 30, "children": [52, 53, 54]}
    node = SigningKey.generate().public_key_hex
    to = envelope.address(node, 13360)  # addressed, as every message to a cell is

    raw_key = PrivateKey()
    msg = envelope.encode(envelope.sign(key, "tree.hb", payload, clock, ip="127.0.0.2", port=1336, to=to))
    sig = raw_key.sign(msg)
    pub = raw_key.public_key

    def verify_round() -> float:
        wires = [
            envelope.encode(envelope.sign(key, "tree.hb", payload, clock, ip="127.0.0.2", port=1336, to=to))
            for _ in range(N)
        ]
        verifier = envelope.Verifier(clock)
        verifier.answer_to(node, (13360,))
        return rate(lambda i: verifier.verify(wires[i]))

    rates = best_of(
        {
            "sign": lambda: rate(
                lambda i: envelope.sign(key, "tree.hb", payload, clock, ip="127.0.0.2", port=1336, to=to)
            ),
            "verify": verify_round,
            "raw": lambda: rate(lambda i: pub.verify(sig, msg)),
        }
    )
    sign_rate, verify_rate, raw_rate = rates["sign"], rates["verify"], rates["raw"]

    ratio = verify_rate / raw_rate
    print(f"envelope sign      : {sign_rate:10.0f} /s")
    print(f"envelope verify    : {verify_rate:10.0f} /s")
    print(f"raw secp256k1 verify: {raw_rate:9.0f} /s  (coincurve, same message size)")
    print(f"ratio verify/raw   : {ratio:10.2f}   goal >= {GOAL}  {'OK' if ratio >= GOAL else 'BELOW GOAL'}")
    return {"sign_per_s": sign_rate, "verify_per_s": verify_rate, "raw_verify_per_s": raw_rate, "ratio": ratio}


if __name__ == "__main__":
    main()
