"""The conduit on a booted stick (`--booted-stick`, the desktop image's kiosk): every page says whether the
wallet in use is saved on the stick (from the write-back's record, for this wallet only), a power-off button
that fails loudly where there is nothing to power off, and the kiosk's first page and shared secret.
The write to the stick itself (a FAT partition mounted read-write for one write) runs in the QEMU test
tests/image/test_desktop_image.py: this host has no FAT driver."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from borgusb.conduit import ConduitState, create_app
from borgusb.conduit.__main__ import read_secret
from borgusb.conduit.web import SECRET_HEADER
from borgusb.image.kiosk import write_page
from tests.unit.test_conduit_routes import FAST, WORDS, free_port

PASS = "correct horse battery"


@pytest.fixture
async def stick_conduit(tmp_path: Path):
    port = free_port()
    state = ConduitState(tmp_path / "stick" / "keystore.json", kdf=FAST, secret="k" * 43)
    state.keystore_path.parent.mkdir()
    status = tmp_path / "stick-saved.json"
    client = TestClient(TestServer(create_app(state, ["127.0.0.250"], port=port, booted_stick=status), port=port))
    await client.start_server()
    client.state, client.status = state, status  # type: ignore[attr-defined]
    yield client
    await client.close()


def record(client: TestClient, state: str, data: bytes, detail: str = "") -> None:
    digest = hashlib.sha256(data).hexdigest()
    client.status.write_text(json.dumps({"state": state, "sha256": digest, "detail": detail}))  # type: ignore[attr-defined]


async def page(client: TestClient, path: str) -> str:
    resp = await client.get(path, headers={SECRET_HEADER: client.state.secret})  # type: ignore[attr-defined]
    assert resp.status == 200, await resp.text()
    return await resp.text()


async def session_stick(client: TestClient) -> dict:
    resp = await client.get("/api/session", headers={SECRET_HEADER: client.state.secret})  # type: ignore[attr-defined]
    return (await resp.json())["stick"]


async def test_the_pages_say_whether_this_wallet_is_saved_on_the_stick(stick_conduit: TestClient) -> None:
    assert "This stick holds no wallet yet." in await page(stick_conduit, "/welcome")
    resp = await stick_conduit.post(
        "/restore",
        data={"words": WORDS, "passphrase": PASS, "passphrase2": PASS},
        headers={SECRET_HEADER: stick_conduit.state.secret},  # type: ignore[attr-defined]
    )
    assert resp.status == 200, await resp.text()
    data = stick_conduit.state.keystore_path.read_bytes()  # type: ignore[attr-defined]
    assert (await session_stick(stick_conduit))["state"] == "unknown"  # saved in RAM, the write-back not yet run
    record(stick_conduit, "saving", data)
    assert "keep the stick in" in await page(stick_conduit, "/home")
    record(stick_conduit, "saved", data)
    home = await page(stick_conduit, "/home")
    assert "Your wallet is saved on this stick." in home and 'id="power-off"' in home
    assert 'accesskey="p"' in home  # reached from the keyboard at the kiosk (Alt+P), on every page
    record(stick_conduit, "failed", data, "the stick holds the keystore it held before")
    assert (await session_stick(stick_conduit))["words"].endswith("the stick holds the keystore it held before")
    record(stick_conduit, "saved", b"an earlier wallet's keystore")  # says nothing of this wallet
    assert (await session_stick(stick_conduit))["state"] == "unknown"


async def test_power_off_needs_the_secret_and_says_when_it_cannot(stick_conduit: TestClient) -> None:
    assert (await stick_conduit.post("/power-off")).status == 401
    resp = await stick_conduit.post("/power-off", headers={SECRET_HEADER: stick_conduit.state.secret})  # type: ignore[attr-defined]
    # this host has no borgusb-poweroff.service: the person is told to pull the stick, nothing is hidden
    assert resp.status == 500 and "pull the stick instead" in await resp.text()


async def test_a_conduit_not_on_a_booted_stick_has_neither(tmp_path: Path) -> None:
    port = free_port()
    state = ConduitState(tmp_path / "keystore.json", kdf=FAST)
    client = TestClient(TestServer(create_app(state, ["127.0.0.250"], port=port), port=port))
    await client.start_server()
    try:
        headers = {SECRET_HEADER: state.secret}
        assert 'id="stick-saved"' not in await (await client.get("/welcome", headers=headers)).text()
        assert (await client.post("/power-off", headers=headers)).status == 404
        assert (await (await client.get("/api/session", headers=headers)).json())["stick"] is None
    finally:
        await client.close()


def test_the_kiosk_page_forwards_to_the_link_with_the_shared_secret(tmp_path: Path) -> None:
    creds, runtime = tmp_path / "creds", tmp_path / "run"
    creds.mkdir()
    runtime.mkdir()
    secret = "A-_z09" * 8
    (creds / "secret").write_text(secret + "\n")
    page = write_page(creds, runtime)
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert f'content="0;url=http://127.0.0.1:8088/#k={secret}"' in page.read_text()
    assert read_secret(creds / "secret") == secret  # the conduit reads the same file (--secret-file)
    for bad in ("short", 'x"><script>' * 4, ""):
        (creds / "secret").write_text(bad)
        with pytest.raises(ValueError):
            write_page(creds, runtime)
        assert read_secret(creds / "secret") is None
