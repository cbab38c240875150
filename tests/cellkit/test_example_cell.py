"""A cell added from outside the package: discovered, configured, run, called, shown in the conduit.

Nothing in borgusb/ names exampleEchoCell: if any of these pass, the kit's
extension point works as the README's "Adding a cell" says.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from borgusb.cells import implemented, spec
from borgusb.clock import SystemClock
from borgusb.conduit import ConduitState, create_app
from borgusb.conduit.web import SECRET_HEADER
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.keystore import KdfParams
from borgusb.net.peer import PeerClient, PeerRejected

from .example import pythonpath

BORGUSB = [sys.executable, "-c", "import sys; from borgusb.cli import main; sys.exit(main())"]
WORDS = (
    "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful "
    "legal winner thank year wave sausage worth title"
)


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BORGUSB, *args], env=env, capture_output=True, text=True, timeout=120)


def test_listed_and_its_settings_documented_and_checked(example_site: Path) -> None:
    env = pythonpath(example_site)
    listing = run_cli(["cell", "list"], env)
    assert listing.returncode == 0, listing.stderr
    assert re.search(r"^exampleEchoCell\s+13910\s+13911\s+13912\s+3\s", listing.stdout, re.M)
    helped = run_cli(["cell", "run", "exampleEchoCell", "--help"], env)
    assert helped.returncode == 0 and "--greeting" in helped.stdout and "--max-len" in helped.stdout
    bad = run_cli(["cell", "run", "exampleEchoCell", "--ip", "127.0.0.61", "--max-len", "0"], env)
    assert bad.returncode == 2
    assert "exampleEchoCell --max-len must be between 1 and 4096, not 0" in bad.stderr
    # without the entry point, the name is unknown and the error lists what exists
    plain = run_cli(["cell", "run", "exampleEchoCell"], {k: v for k, v in env.items() if k != "PYTHONPATH"})
    assert plain.returncode == 2 and "unknown cell type 'exampleEchoCell'" in plain.stderr


async def test_runs_as_a_process_and_answers_its_typed_client(example_site: Path, example_installed: None) -> None:
    from borgusb_example_echo.cell import EchoClient  # type: ignore[import-not-found]

    ip = "127.0.0.61"
    proc = subprocess.Popen(
        [*BORGUSB, "cell", "run", "exampleEchoCell", "--ip", ip, "--greeting", "hi"],
        env=pythonpath(example_site),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clock = SystemClock()
    peers = PeerClient(SigningKey.generate(), clock, Verifier(clock), timeout_s=5)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        assert line.startswith("BORGUSB-READY cell=exampleEchoCell"), (line, proc.stderr.read() if proc.poll() else "")
        echo = EchoClient(peers, ip)
        assert await echo.say("you") == "hi, you"
        with pytest.raises(PeerRejected) as refused:
            await echo.say("x" * 65)
        assert refused.value.reason == "too_long" and refused.value.status == 413
        await echo.broadcast("note", {"text": "remember me"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            notes = await echo.notes()
            if notes:
                break
            await asyncio.sleep(0.1)
        assert notes == [{"from": peers.key.public_key_hex, "text": "remember me"}]
        status = await echo.status()
        assert status["settings"] == {"greeting": "hi", "max_len": 64} and status["echo"] == {"notes": 1}
    finally:
        await peers.close()
        proc.terminate()
        proc.wait(timeout=30)


async def test_conduit_shows_its_page(tmp_path: Path, example_installed: None) -> None:
    assert "exampleEchoCell" in implemented() and spec("exampleEchoCell").web
    state = ConduitState(tmp_path / "keystore.json", kdf=KdfParams(iterations=1, lanes=1, memory_kib=1024))
    state.restore(WORDS, "passphrase", "")
    app = create_app(state, seeds=["127.0.0.250"], port=18088)
    client = TestClient(TestServer(app, port=18088))
    await client.start_server()
    try:
        resp = await client.get("/echo", headers={SECRET_HEADER: state.secret})  # as the page script fetches it
        html = await resp.text()
        assert resp.status == 200 and 'id="echo-page"' in html
        assert '<a href="/echo" class="on">Echo</a>' in html and '<a href="/files"' in html
        shell = await client.get("/echo")  # a browser going to the address, or any local process
        assert shell.status == 200 and 'id="echo-page"' not in await shell.text()
    finally:
        await client.close()
