"""The example cell, installed the way a wheel would install it: a dist-info with an entry point."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from borgusb import dna
from borgusb.cells import specs

from .example import HERE, write_site


@pytest.fixture
def example_site(tmp_path: Path) -> Iterator[Path]:
    """A folder holding the example's dist-info; with tests/cellkit, what PYTHONPATH needs."""
    yield write_site(tmp_path / "site")


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
