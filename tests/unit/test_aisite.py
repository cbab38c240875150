"""borgusb.aisite: a cell finds the AI stack's site directory named by its unit, after the cell host's
import path was fixed, and the installed packages stay first."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from borgusb.aisite import ENV, use_ai_site


@pytest.fixture
def clean_path():
    before = list(sys.path)
    yield
    sys.path[:] = before
    sys.modules.pop("borgusb_aisite_probe", None)


def test_the_site_is_appended_and_importable(tmp_path: Path, clean_path: None) -> None:
    (tmp_path / "borgusb_aisite_probe.py").write_text("ANSWER = 42\n")
    assert use_ai_site({ENV: str(tmp_path)}) == str(tmp_path)
    assert sys.path[-1] == str(tmp_path)  # after the image's own packages
    assert importlib.import_module("borgusb_aisite_probe").ANSWER == 42
    assert use_ai_site({ENV: str(tmp_path)}) == str(tmp_path)
    assert sys.path.count(str(tmp_path)) == 1  # once, however often a cell asks


def test_no_site_when_unset_or_missing(tmp_path: Path, clean_path: None) -> None:
    before = list(sys.path)
    assert use_ai_site({}) is None
    assert use_ai_site({ENV: str(tmp_path / "not-mounted")}) is None
    assert sys.path == before
