"""Every conduit route through aiohttp's test client: flows, guards, clear errors."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from borgusb.conduit import ConduitState, create_app
from borgusb.identity import derive_public
from borgusb.keystore import KdfParams

WORDS = (
    "legal winner thank year wave sausage worth useful legal winner thank year "
    "wave sausage worth useful legal winner thank year wave sausage worth title"
)
FAST = KdfParams(iterations=1, lanes=1, memory_kib=1024)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def conduit(tmp_path: Path):
    port = free_port()
    state = ConduitState(tmp_path / "stick" / "keystore.json", kdf=FAST)
    state.keystore_path.parent.mkdir()
    app = create_app(state, seeds=["127.0.0.250"], port=port)  # no node there: pages must still work
    client = TestClient(TestServer(app, port=port))
    await client.start_server()
    client.state = state  # type: ignore[attr-defined]
    yield client
    await client.close()


def token_of(html: str) -> str:
    return re.search(r'name="borg-token" content="([^"]+)"', html).group(1)


async def page(client: TestClient, path: str = "/") -> str:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return await resp.text()


async def test_first_run_create_confirm_and_home(conduit) -> None:
    html = await page(conduit, "/")  # redirected to /welcome
    assert "Create a new wallet" in html
    token = token_of(html)
    resp = await conduit.post("/create", data={"token": token})
    html = await resp.text()
    words = re.findall(r'<span class="w">([a-z]+)</span>', html)
    numbers = re.findall(r'<span class="n">(\d+)</span>', html)
    assert len(words) == 24 and numbers == [str(i) for i in range(1, 25)]
    positions = [int(n) for n in re.findall(r'name="word(\d+)"', html)]
    assert len(positions) == 3

    wrong = {f"word{n}": "zoo" for n in positions} | {
        "token": token,
        "passphrase": "long enough",
        "passphrase2": "long enough",
    }
    resp = await conduit.post("/create/confirm", data=wrong)
    assert resp.status == 400 and "does not match" in await resp.text()
    assert not conduit.state.keystore_path.exists()

    right = {f"word{n}": words[n - 1] for n in positions} | {
        "token": token,
        "passphrase": "long enough",
        "passphrase2": "long enough",
    }
    resp = await conduit.post("/create/confirm", data=right)
    home = await resp.text()
    assert resp.status == 200 and resp.url.path == "/home"
    address = derive_public(" ".join(words)).doge_address
    assert address in home and "<svg" in home  # the QR code
    # the words are never shown again (single words like "address" may well appear in page text)
    assert 'class="words"' not in home and 'class="w"' not in home
    assert not any(" ".join(words[i : i + 3]) in home for i in range(22))
    assert conduit.state.keystore_path.exists()
    wallet = conduit.state.wallet
    assert wallet is not None and not wallet.key.closed  # the new wallet is usable: it can sign
    assert wallet.key.sign(b"x")


async def test_restore_lock_unlock(conduit) -> None:
    token = token_of(await page(conduit, "/restore"))
    resp = await conduit.post(
        "/restore",
        data={
            "token": token,
            "words": WORDS.replace("title", "titl"),
            "passphrase": "long enough",
            "passphrase2": "long enough",
        },
    )
    assert resp.status == 400 and "word 24" in await resp.text()
    resp = await conduit.post(
        "/restore", data={"token": token, "words": WORDS, "passphrase": "long enough", "passphrase2": "long enough"}
    )
    assert resp.url.path == "/home"
    assert derive_public(WORDS).doge_address in await resp.text()

    resp = await conduit.post("/lock", data={"token": token})
    assert resp.url.path == "/unlock" and not conduit.state.unlocked
    resp = await conduit.get("/home")
    assert resp.url.path == "/unlock"
    resp = await conduit.post("/unlock", data={"token": token, "passphrase": "wrong one"})
    assert resp.status == 400 and "wrong passphrase" in await resp.text()
    resp = await conduit.post("/unlock", data={"token": token, "passphrase": "long enough"})
    assert resp.url.path == "/home" and conduit.state.unlocked


async def test_create_refused_when_a_keystore_exists(conduit) -> None:
    token = token_of(await page(conduit, "/restore"))
    await conduit.post(
        "/restore", data={"token": token, "words": WORDS, "passphrase": "long enough", "passphrase2": "long enough"}
    )
    resp = await conduit.post("/create", data={"token": token})
    assert resp.status == 400 and "already holds a wallet" in await resp.text()


async def test_dns_rebinding_host_is_refused(conduit) -> None:
    resp = await conduit.get("/", headers={"Host": "attacker.example:80"})
    assert resp.status == 421


async def test_cross_site_post_is_refused(conduit) -> None:
    token = token_of(await page(conduit, "/welcome"))
    resp = await conduit.post("/create", data={"token": token}, headers={"Origin": "http://attacker.example"})
    assert resp.status == 403
    resp = await conduit.post("/create", data={})  # no token
    assert resp.status == 403
    resp = await conduit.post("/create", data={"token": "guess"})
    assert resp.status == 403
    resp = await conduit.post("/create", data={"token": token}, headers={"Origin": f"http://127.0.0.1:{conduit.port}"})
    assert resp.status == 200


async def test_api_needs_the_page_token_and_reports_errors_as_json(conduit) -> None:
    resp = await conduit.get("/api/session")
    assert resp.status == 403
    token = token_of(await page(conduit, "/welcome"))
    resp = await conduit.get("/api/session", headers={"X-Borg-Token": token})
    assert (await resp.json())["unlocked"] is False
    resp = await conduit.get("/api/tree?cell=nope", headers={"X-Borg-Token": token})
    body = await resp.json()
    assert resp.status == 400 and "unknown cell" in body["error"]
    resp = await conduit.get("/api/tree", headers={"X-Borg-Token": token})  # no node reachable
    body = await resp.json()
    assert resp.status == 200 and body["members"] == [] and body["error"]


async def test_auto_lock_after_idle(conduit) -> None:
    token = token_of(await page(conduit, "/restore"))
    await conduit.post(
        "/restore", data={"token": token, "words": WORDS, "passphrase": "long enough", "passphrase2": "long enough"}
    )
    conduit.state.idle_lock_s = 0.3
    key_buffer = conduit.state.wallet.key._secret
    # no request at all: the background loop, not the next request's guard, must forget the key
    deadline = asyncio.get_running_loop().time() + 30
    while conduit.state.unlocked and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert not conduit.state.unlocked and not any(key_buffer)
    resp = await conduit.get("/home")
    assert resp.url.path == "/unlock"


async def test_errors_never_show_a_traceback(conduit) -> None:
    token = token_of(await page(conduit, "/welcome"))
    resp = await conduit.post("/create/confirm", data={"token": token, "passphrase": "x", "passphrase2": "x"})
    text = await resp.text()
    assert resp.status == 400 and "Traceback" not in text and "start again" in text


async def test_static_assets(conduit) -> None:
    assert (await conduit.get("/static/conduit.js")).status == 200
    assert (await conduit.get("/static/conduit.css")).status == 200


# --- issue 15 item 3: headers that keep network content from becoming page content ---


def _csp(resp) -> dict[str, str]:
    policy = resp.headers.get("Content-Security-Policy", "")
    return {d.split()[0]: d.strip() for d in policy.split(";") if d.strip()}


async def test_pages_restrict_forms_and_base_and_are_not_sniffed(conduit) -> None:
    token = token_of(await page(conduit, "/welcome"))
    error_page = await conduit.post("/create/confirm", data={"token": token, "passphrase": "x", "passphrase2": "x"})
    assert error_page.status == 400
    for path, resp in (
        ("/welcome", await conduit.get("/welcome")),
        ("/restore", await conduit.get("/restore")),
        ("error page", error_page),
    ):
        csp = _csp(resp)
        assert csp.get("form-action") == "form-action 'self'", path  # an injected form cannot post elsewhere
        assert csp.get("base-uri") == "base-uri 'none'", path  # nor re-point relative URLs
        assert csp.get("default-src") == "default-src 'self'", path  # no inline script, no foreign script
        assert (
            "unsafe-inline" not in csp.get("script-src", "")
            and "unsafe-eval" not in resp.headers["Content-Security-Policy"]
        )
        assert csp.get("frame-ancestors") == "frame-ancestors 'none'", path
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", path


async def test_download_is_an_unsniffed_attachment(conduit, monkeypatch) -> None:
    """A stored file whose bytes are HTML must never be rendered by the browser as a conduit page."""
    import sys

    from borgusb.conduit import app as conduit_app
    from borgusb.conduit.network import Served

    token = token_of(await page(conduit, "/restore"))
    await conduit.post(
        "/restore", data={"token": token, "words": WORDS, "passphrase": "long enough", "passphrase2": "long enough"}
    )
    app = conduit.server.app
    route = next(
        r
        for r in app.router.routes()
        if r.resource is not None and r.resource.canonical == "/files/{id}/download" and r.method == "GET"
    )
    module = sys.modules[route.handler.__module__]
    oid = "ab" * 32
    evil = b"<html><script>alert(1)</script><form action=https://evil.example></form></html>"

    async def use(*args, **kwargs):
        return Served(result={}, endpoint="127.0.0.9")

    class FakeReceiver:
        def __init__(self, client, manifest, holders, path) -> None:
            self.path = path

        async def run(self) -> None:
            Path(self.path).write_bytes(evil)

    monkeypatch.setattr(app[conduit_app.NETWORK], "use", use)
    monkeypatch.setattr(module, "parse_locate", lambda result, oid: ({}, []))
    monkeypatch.setattr(module, "Receiver", FakeReceiver)
    conduit.state.file_names[oid] = 'page".html'
    resp = await conduit.get(f"/files/{oid}/download", headers={"X-Borg-Token": token})
    assert resp.status == 200 and await resp.read() == evil
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Type"] == "application/octet-stream"
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and disposition.count('"') == 2 and "page.html" in disposition
