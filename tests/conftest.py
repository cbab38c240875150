"""Shared fixtures. Tests run real code; the only stand-ins are clocks we move by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import settings

VECTORS = Path(__file__).parent / "vectors"

settings.register_profile("default", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def load_vectors(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


@pytest.fixture
def fast_kdf():
    """Argon2id parameters small enough for many keystore tests (the default is tested too)."""
    from borgusb.keystore import KdfParams

    return KdfParams(iterations=1, lanes=1, memory_kib=1024)
