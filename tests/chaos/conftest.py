"""The chaos scenarios' fixture and their two forms.

`BORGUSB_CHAOS=full` (``./build.sh chaos``) runs each scenario at its full length; otherwise
the short form runs (part of ``./build.sh test``). `BORGUSB_CHAOS_FIGURES=path` makes each
scenario add its figures there (JSON lines), from which ``tests/chaos/report.py`` writes the
table in docs/chaos.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import ChaosNet, leaks

FULL = os.environ.get("BORGUSB_CHAOS") == "full"


def form(short: float, full: float) -> float:
    """A scenario's length in its running form."""
    return full if FULL else short


def figures(scenario: str, values: dict[str, Any]) -> None:
    """Print a scenario's figures and keep them for the report."""
    print(f"\nchaos {scenario} ({'full' if FULL else 'short'} form): {json.dumps(values)}")
    path = os.environ.get("BORGUSB_CHAOS_FIGURES")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"scenario": scenario, "form": "full" if FULL else "short", **values}) + "\n")


@pytest.fixture
def chaos_net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Build ChaosNets; each is torn down pass or fail, and a leaked namespace or process fails the test."""
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.fail("the chaos suite needs root, ip and nft (./build.sh test installs nftables)")
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    made: list[ChaosNet] = []

    def make(size: int, **kw: Any) -> ChaosNet:
        net = ChaosNet(size=size, root_dir=tmp_path, **kw)
        made.append(net)
        net.build()
        return net

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # a SIGTERM (e.g. `timeout`) tears down as Ctrl-C does

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        yield make
    finally:
        signal.signal(signal.SIGTERM, previous)
        left = [what for net in made for what in net.teardown()] + leaks()
    assert not left, f"the scenario leaked (now removed): {left}"
