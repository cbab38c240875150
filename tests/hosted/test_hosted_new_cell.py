"""Hosted mode runs a cell type added from outside BorgUSB, with no edit to hosted mode.

The example cell of tests/cellkit is installed as a wheel would install it
(a dist-info naming its SPEC under the ``borgusb.cells`` entry point); hosted
mode's node is every implemented cell type, so plugging a stick in starts it too.
"""

from __future__ import annotations

import json
import time
import urllib.request

from runtime import copy_readable
from stick import make_stick
from test_hosted import free_port, wallet_keystore

from tests.cellkit.example import HERE, write_site

NODE_IP = "127.66.0.1"


def test_a_new_cell_type_runs_in_hosted_mode(tmp_path, runtime, watcher_factory, loops) -> None:
    ks, _ = wallet_keystore(tmp_path)
    image = make_stick(tmp_path / "stick.img", keystore=ks)
    site = runtime.readable_dir(f"example-{tmp_path.name}")  # the cells' own user must read it
    copy_readable(HERE / "borgusb_example_echo", site / "borgusb_example_echo")
    w = watcher_factory(free_port(), cells=None, env=runtime.env(write_site(site)))
    t_start = time.monotonic()
    loops(image)
    w.wait_for(r"BORGUSB-HOSTED-READY", 180, after=t_start)  # every cell type (13) and the example start first
    w.wait_for(r"BORGUSB-READY cell=exampleEchoCell ip=127\.66\.0\.1", 120, after=t_start)
    deadline = time.monotonic() + 30
    while True:  # its monitoring port, with the settings the kit filled in
        try:
            with urllib.request.urlopen(f"http://{NODE_IP}:13912/status", timeout=5) as resp:
                status = json.load(resp)
            break
        except OSError:
            assert time.monotonic() < deadline, w.text()[-3000:]
            time.sleep(0.2)
    assert status["cell"]["name"] == "exampleEchoCell" and status["settings"] == {"greeting": "hello", "max_len": 64}
