"""Coverage-guided fuzzing of every receptor, frame and broadcast handler with atheris (libFuzzer).

    python -m tests.fuzz.atheris_receptors CORPUS_DIR -runs=N -seed=S   (from the checkout's root)
    python -m tests.fuzz.atheris_receptors --seeds DIR                  (write a fresh seed corpus)

An input is read with `atheris.FuzzedDataProvider`. Its last bytes pick the cell type, one of its
(door, message type) pairs, the requester (stranger, owner or the cell's own key), the address
(the cell or everyone; for a broadcast, its origin's type) and the TCP peer a serviceMgr sees; the
rest is the payload as JSON text, or for a frame a JSON text of a length its last two bytes give,
then the frame's bytes. Text that is not JSON, or JSON canonical form refuses, is no message.

The message is signed by that requester and goes through `incell.Fuzzed`, the harness of
test_receptor_fuzz.py, with its checks: never a 500 ``internal``, every refusal typed and counted,
no broadcast handler raising, no failed background task; a failed check is a crash, which
libFuzzer reports with the input. One cell per type lives for the whole run (built once, so an
execution is one message, not a cell's start), in one event loop; before each input the per-key
rate buckets are emptied, since a fuzzer's three requesters would otherwise be refused
``rate_limited`` ever after and reach nothing else. Coverage is borgusb's (instrumented imports).
The cells' data live in a temporary directory that libFuzzer's exit leaves behind: run it with
TMPDIR set to one you remove (the test and ``./build.sh fuzz`` do).

``--seeds`` draws a few payloads per message type from test_receptor_fuzz.py's shaped strategies
(derandomized), so the fuzzer starts from real field names and signed documents; the kept corpus
in tests/fuzz/corpus/receptors/ grew from them (docs/fuzzing.md).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import atheris

with atheris.instrument_imports(include=["borgusb"]):
    from borgusb import canonical, cells
    from borgusb.cells.kit.guard import TokenBuckets

    from .incell import IP, REQUESTERS, SENDER_IP, Fuzzed, Unsignable, doors, request_source, send
    from .libfuzzer import MAX_LEN, fuzzer_argv

    # resolving each cell type's class imports its modules here, instrumented
    CASES = [(name, doors(name)) for name in cells.implemented()]

TO = (("self", "everyone"), ("bcast", "tree.broadcast"))  # a request's address; a broadcast's origin
SOURCES = (IP, SENDER_IP, None)
SEEDS_PER_TYPE = 4


class Message(NamedTuple):
    cell: int  # index into CASES
    door: str
    mtype: str
    key: int  # index into REQUESTERS
    to: str
    source: str | None
    payload: Any
    raw: bytes


def decode(data: bytes) -> Message | None:
    """The message an input spells, or None (its payload is not JSON)."""
    fdp = atheris.FuzzedDataProvider(data)
    cell = fdp.ConsumeIntInRange(0, len(CASES) - 1)
    cases = CASES[cell][1]
    door, mtype = cases[fdp.ConsumeIntInRange(0, len(cases) - 1)]
    key = fdp.ConsumeIntInRange(0, len(REQUESTERS) - 1)
    to = TO[door == "broadcast"][fdp.ConsumeIntInRange(0, 1)]
    source = SOURCES[fdp.ConsumeIntInRange(0, len(SOURCES) - 1)]
    length = fdp.ConsumeIntInRange(0, 0xFFFF) if door == "frame" else fdp.remaining_bytes()
    text = fdp.ConsumeBytes(length)
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return Message(cell, door, mtype, key, to, source, payload, fdp.ConsumeBytes(fdp.remaining_bytes()))


def encode(m: Message) -> bytes:
    """The input `decode` reads as m (its ints are taken from the end, last first)."""
    cases = CASES[m.cell][1]
    text = canonical.dumps(m.payload)
    tail = [SOURCES.index(m.source), TO[m.door == "broadcast"].index(m.to), m.key]
    tail += [cases.index((m.door, m.mtype)), m.cell]
    frame = [*text, *m.raw, len(text) & 0xFF, len(text) >> 8] if m.door == "frame" else [*text]
    return bytes(frame + tail)


class Target:
    """The long-lived cells (built on first use), their loop, and the rate buckets to empty."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.TemporaryDirectory(prefix="borgusb-atheris-")
        self.cells: dict[str, Fuzzed] = {}
        self.buckets: list[TokenBuckets] = []

    def cell(self, name: str) -> Fuzzed:
        if name not in self.cells:

            async def build() -> Fuzzed:
                data_dir = Path(self.dir.name) / name
                data_dir.mkdir()
                return Fuzzed(name, data_dir)

            self.cells[name] = self.loop.run_until_complete(build())
            self.buckets = [o for o in gc.get_objects() if isinstance(o, TokenBuckets)]
        return self.cells[name]

    def one_input(self, data: bytes) -> None:
        m = decode(data)
        if m is None:
            return
        fuzzed = self.cell(CASES[m.cell][0])
        for bucket in self.buckets:
            bucket._buckets.clear()
        with request_source(m.source):
            try:
                self.loop.run_until_complete(send(fuzzed, m.door, REQUESTERS[m.key], m.mtype, m.payload, m.raw, m.to))
            except Unsignable:
                pass


def write_seeds(out: Path) -> None:
    """SEEDS_PER_TYPE inputs per message type, payloads drawn from the hypothesis fuzzer's shapes."""
    from hypothesis import given
    from hypothesis import strategies as st

    from .strategies import fuzz_settings
    from .test_receptor_fuzz import payloads

    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for cell, (name, cases) in enumerate(CASES):
        for door, mtype in cases:
            drawn: list[tuple[Any, bytes]] = []

            @fuzz_settings(SEEDS_PER_TYPE)
            @given(st.data())
            def draw(data: st.DataObject) -> None:
                drawn.append(data.draw(payloads(name, door, mtype)))  # noqa: B023 (run at once)

            draw()
            for i, (payload, raw) in enumerate(drawn):
                to = TO[door == "broadcast"][i % 4 == 3]
                try:
                    data = encode(Message(cell, door, mtype, i % len(REQUESTERS), to, IP, payload, raw))
                except canonical.CanonicalError:
                    continue
                if len(data) <= MAX_LEN:  # the runs' -max_len: a larger seed would only be cut
                    assert decode(data) == Message(cell, door, mtype, i % len(REQUESTERS), to, IP, payload, raw)
                    (out / f"{name}-{mtype}-{i}").write_bytes(data)
                    written += 1
    print(f"{written} seeds in {out}")


def main() -> None:
    if sys.argv[1:2] == ["--seeds"]:
        write_seeds(Path(sys.argv[2]))
        return
    target = Target()
    atheris.Setup(fuzzer_argv(__spec__.name), target.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
