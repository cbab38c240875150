"""The example cell, installed the way a wheel would install it: a dist-info with an entry point."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from borgusb import dna
from borgusb.cells import specs

HERE = Path(__file__).parent
ENTRY_POINTS = "[borgusb.cells]\nexampleEchoCell = borgusb_example_echo:SPEC\n"


@pytest.fixture
def example_site(tmp_path: Path) -> Iterator[Path]:
    """A folder holding the example's dist-info; with tests/cellkit, what PYTHONPATH needs."""
    info = tmp_path / "site" / "borgusb_example_echo-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: borgusb-example-echo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    yield info.parent


@pytest.fixture
def example_installed(example_site: Path) -> Iterator[None]:
    """The example visible to this process (and gone again afterwards)."""
    added = [str(HERE), str(example_site)]
    sys.path[:0] = added
    specs.cache_clear()
    try:
        yield
    finally:
        for p in added:
            sys.path.remove(p)
        specs.cache_clear()
        dna.CELLS.pop("exampleEchoCell", None)


def pythonpath(example_site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(example_site)])}
