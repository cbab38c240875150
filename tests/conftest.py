"""Shared fixtures. Tests run real code; the only stand-ins are clocks we move by hand."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from hypothesis import settings

VECTORS = Path(__file__).parent / "vectors"

settings.register_profile("default", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM ends the run like Ctrl-C: fixtures tear down (QEMU guests, namespaces, loop devices).
    build.sh stops its background lane this way (a background job's SIGINT is ignored)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def load_vectors(name: str, version: int | None = None) -> dict:
    """A vector file under tests/vectors/ (UTF-8 JSON).

    With `version`, the file must be a {source, version, cases} file of exactly
    that version: a test pins the format version its vectors describe, so a
    regenerated file with another version fails until the test is updated too."""
    doc = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    if version is not None:
        assert isinstance(doc.get("source"), str) and doc["source"], f"{name}: no source"
        assert doc.get("version") == version, f"{name}: version {doc.get('version')!r}, the test expects {version}"
        assert isinstance(doc.get("cases"), list) and doc["cases"], f"{name}: no cases"
    return doc


@pytest.fixture
def fast_kdf():
    """Argon2id parameters small enough for many keystore tests (the default is tested too)."""
    from borgusb.keystore import KdfParams

    return KdfParams(iterations=1, lanes=1, memory_kib=1024)
