"""Install the example cell the way a wheel would: a dist-info whose entry point names its SPEC."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).parent
ENTRY_POINTS = "[borgusb.cells]\nexampleEchoCell = borgusb_example_echo:SPEC\n"


def write_site(site: Path) -> Path:
    """site/borgusb_example_echo-0.1.dist-info (METADATA, entry_points.txt); returns site."""
    info = site / "borgusb_example_echo-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: borgusb-example-echo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def pythonpath(site: Path) -> dict[str, str]:
    """This environment, with the example's package and its dist-info importable."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(site)])}
