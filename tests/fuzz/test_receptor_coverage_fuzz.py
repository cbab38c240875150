"""Coverage-guided fuzzing of every receptor, frame and broadcast handler (atheris_receptors.py).

A short run in a subprocess from a copy of the kept corpus (tests/fuzz/corpus/receptors/), with a
fixed seed and run count: each input is one message to a long-lived in-process cell, held to the
checks of test_receptor_fuzz.py (never a 500 ``internal``, every refusal typed and counted, no
failed background task); a failed check is a libFuzzer crash, and the test fails with its log.
`./build.sh fuzz` runs it at length (docs/fuzzing.md). Skipped where atheris is not installed (it
ships wheels for x86_64 only).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .libfuzzer import short_run


def test_coverage_guided_fuzzing_of_every_receptor(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris ships wheels for x86_64 only")
    short_run("atheris_receptors", tmp_path, runs=30_000)
