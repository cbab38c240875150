"""exampleEchoCell: the smallest complete cell, added without touching BorgUSB itself.

It proves the README's "Adding a cell" walkthrough: this package lives
outside ``borgusb/``, declares itself through the ``borgusb.cells`` entry
point (see tests/cellkit/conftest.py, which writes the dist-info a wheel
would), brings its own DNA row, and gets a receptor, a broadcast handler,
typed settings, a typed client and a conduit page from the kit alone.
"""

from __future__ import annotations

from borgusb.cells.spec import CellSpec
from borgusb.dna import CellDNA

SPEC = CellSpec(
    dna=CellDNA("exampleEchoCell", 13910, 13911, 13912, 3, "an example cell (tests only)"),
    runtime="borgusb_example_echo.cell:EchoCell",
    settings="borgusb_example_echo.cell:EchoSettings",
    client="borgusb_example_echo.cell:EchoClient",
    web="borgusb_example_echo.web:setup",
    network_clock=False,
)
