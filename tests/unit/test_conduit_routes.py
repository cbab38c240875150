"""Every conduit route through aiohttp's test client: flows, guards, clear errors."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from borgusb.conduit import ConduitState, create_app
from borgusb.conduit.web import BACKGROUND_HEADER, SECRET_HEADER
from borgusb.identity import derive_public
from borgusb.keystore import KdfParams, peek_public

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


def auth(client: TestClient) -> dict[str, str]:
    """The header the page script sends: the conduit's secret (from the launcher's link)."""
    return {SECRET_HEADER: client.state.secret}  # type: ignore[attr-defined]


async def page(client: TestClient, path: str = "/") -> str:
    """A page as the page script fetches it (with the secret), after any redirect."""
    resp = await client.get(path, headers=auth(client))
    assert resp.status == 200, await resp.text()
    return await resp.text()


async def post(client: TestClient, path: str, data: dict[str, str] | None = None):
    return await client.post(path, data=data or {}, headers=auth(client))


async def restore(client: TestClient) -> None:
    resp = await post(client, "/restore", {"words": WORDS, "passphrase": "long enough", "passphrase2": "long enough"})
    assert resp.status == 200 and (await resp.json()) == {"go": "/home"}  # answered in place (onboarding.py)


async def test_first_run_create_confirm_and_home(conduit) -> None:
    html = await page(conduit, "/")  # redirected to /welcome
    assert "Create a new wallet" in html
    resp = await post(conduit, "/create")
    assert resp.url.path == "/create"  # redirected after the POST: a reload or Back is a GET
    html = await resp.text()
    words = re.findall(r'<span class="w">([a-z]+)</span>', html)
    numbers = re.findall(r'<span class="n">(\d+)</span>', html)
    assert len(words) == 24 and numbers == [str(i) for i in range(1, 25)]
    assert re.findall(r'<span class="w">([a-z]+)</span>', await page(conduit, "/create")) == words  # one set
    check = await page(conduit, "/create/check")
    positions = [int(n) for n in re.findall(r'name="word(\d+)"', check)]
    assert len(positions) == 3 and 'class="w"' not in check  # the words are off the check's page

    wrong = {f"word{n}": words[n - 1] for n in positions} | {f"word{positions[1]}": "zoo"}
    wrong |= {"passphrase": "long enough", "passphrase2": "long enough"}
    resp = await post(conduit, "/create/confirm", wrong)
    body = await resp.json()
    assert resp.status == 400 and "does not match" in body["error"] and body["clear"] == [f"word{positions[1]}"]
    assert not conduit.state.keystore_path.exists()

    right = {f"word{n}": words[n - 1] for n in positions} | {"passphrase": "long enough", "passphrase2": "long enough"}
    resp = await post(conduit, "/create/confirm", right)
    assert resp.status == 200 and (await resp.json()) == {"go": "/home"}
    home = await page(conduit, "/home")
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
    await page(conduit, "/restore")
    resp = await post(
        conduit,
        "/restore",
        {"words": WORDS.replace("title", "titl"), "passphrase": "long enough", "passphrase2": "long enough"},
    )
    body = await resp.json()
    assert resp.status == 400 and "Word 24" in body["error"] and "title" in body["mark"]["suggestions"]
    assert body["mark"]["start"] == WORDS.index(" titl") + 1 and body["clear"] == []  # the words are kept
    resp = await post(conduit, "/restore", {"words": WORDS, "passphrase": "long enough", "passphrase2": "long enough"})
    assert (await resp.json()) == {"go": "/home"}
    assert derive_public(WORDS).doge_address in await page(conduit, "/home")

    resp = await post(conduit, "/lock")
    assert resp.url.path == "/unlock" and not conduit.state.unlocked
    resp = await conduit.get("/home", headers=auth(conduit))
    assert resp.url.path == "/unlock"
    resp = await post(conduit, "/unlock", {"passphrase": "wrong one"})
    assert resp.status == 400 and "wrong passphrase" in await resp.text()
    resp = await post(conduit, "/unlock", {"passphrase": "long enough"})
    assert resp.url.path == "/home" and conduit.state.unlocked


async def test_create_refused_when_a_keystore_exists(conduit) -> None:
    await restore(conduit)
    resp = await post(conduit, "/create")
    assert resp.status == 400 and "already holds a wallet" in await resp.text()


async def test_a_creation_keeps_its_words_until_cancelled_or_idle(conduit) -> None:
    """Issue 22: a reload showed other words; GET /create was a bare 405."""
    assert 'id="create"' in await page(conduit, "/create")  # nothing under way: a button to start
    first = re.findall(r'<span class="w">([a-z]+)</span>', await (await post(conduit, "/create")).text())
    again = await post(conduit, "/create")  # a second start (Back and a click) keeps the creation
    assert re.findall(r'<span class="w">([a-z]+)</span>', await again.text()) == first
    resp = await post(conduit, "/create/cancel")
    assert resp.url.path == "/welcome" and conduit.state.pending is None
    second = re.findall(r'<span class="w">([a-z]+)</span>', await (await post(conduit, "/create")).text())
    assert len(second) == 24 and second != first
    conduit.state.idle_lock_s = 0.2  # words in memory count as held: the idle lock drops them
    deadline = asyncio.get_running_loop().time() + 30
    while conduit.state.pending is not None and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert conduit.state.pending is None


async def test_restore_replaces_a_keystore_only_when_confirmed(conduit) -> None:
    await restore(conduit)
    await post(conduit, "/lock")
    assert 'href="/restore"' in await page(conduit, "/unlock")  # the unlock page offers it
    form = {"words": WORDS.replace("title", "zoo"), "passphrase": "long enough", "passphrase2": "long enough"}
    resp = await post(conduit, "/restore", form)
    assert resp.status == 400 and "tick the box" in (await resp.json())["error"]
    assert 'id="replace"' in await page(conduit, "/restore")
    other = "abandon " * 23 + "art"
    resp = await post(conduit, "/restore", form | {"words": other, "replace": "yes"})
    assert (await resp.json()) == {"go": "/home"}
    assert peek_public(conduit.state.keystore_path)["doge_address"] == derive_public(other).doge_address


async def test_a_damaged_keystore_is_said_before_any_passphrase(conduit) -> None:
    await restore(conduit)
    await post(conduit, "/lock")
    path = conduit.state.keystore_path
    path.write_text(path.read_text()[:100])
    html = await page(conduit, "/unlock")
    assert "is damaged" in html and 'name="passphrase"' not in html and 'href="/restore"' in html
    resp = await post(conduit, "/unlock", {"passphrase": "long enough"})
    assert resp.status == 409 and "is damaged" in await resp.text() and not conduit.state.unlocked


async def test_dns_rebinding_host_is_refused(conduit) -> None:
    resp = await conduit.get("/", headers={"Host": "attacker.example:80"})
    assert resp.status == 421


async def test_cross_site_post_is_refused(conduit) -> None:
    resp = await post(conduit, "/create", {})
    assert resp.status == 200  # the page script's request
    resp = await conduit.post("/create", headers={**auth(conduit), "Origin": "http://attacker.example"})
    assert resp.status == 403
    resp = await conduit.post("/create", headers={**auth(conduit), "Origin": f"http://127.0.0.1:{conduit.port}"})
    assert resp.status == 200


async def test_api_needs_the_secret_and_reports_errors_as_json(conduit) -> None:
    resp = await conduit.get("/api/session")
    assert resp.status == 401 and "link" in (await resp.json())["error"]
    resp = await conduit.get("/api/session", headers=auth(conduit))
    assert (await resp.json())["unlocked"] is False
    resp = await conduit.post("/api/tree?cell=nope", headers=auth(conduit))
    body = await resp.json()
    assert resp.status == 400 and "unknown cell" in body["error"]
    resp = await conduit.post("/api/tree", headers=auth(conduit))  # no node reachable
    body = await resp.json()
    assert resp.status == 200 and body["members"] == [] and body["error"]
    resp = await conduit.post("/api/storage/list", headers=auth(conduit))  # locked: an error, not a redirect
    assert resp.status == 403 and "locked" in (await resp.json())["error"]


async def test_auto_lock_after_idle(conduit) -> None:
    await restore(conduit)
    conduit.state.idle_lock_s = 0.3
    key_buffer = conduit.state.wallet.key._secret
    # no request at all: the background loop, not the next request's guard, must forget the key
    deadline = asyncio.get_running_loop().time() + 30
    while conduit.state.unlocked and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert not conduit.state.unlocked and not any(key_buffer)
    resp = await conduit.get("/home", headers=auth(conduit))
    assert resp.url.path == "/unlock"


async def test_an_unlock_form_sent_again_never_locks(conduit) -> None:
    """Issue 22: after unlocking, Back to the unlock form and submitting it locked the wallet."""
    await restore(conduit)
    for passphrase in ("long enough", "wrong one"):
        resp = await post(conduit, "/unlock", {"passphrase": passphrase})
        assert resp.url.path == "/home" and conduit.state.unlocked
    assert (await conduit.get("/unlock", headers=auth(conduit))).url.path == "/home"


async def test_background_refreshes_do_not_hold_off_the_idle_lock(conduit) -> None:
    """Issue 22: Home refreshes itself every 2 s, and that counted as activity: it never locked."""
    await restore(conduit)
    conduit.state.idle_lock_s = 0.5
    background = {**auth(conduit), BACKGROUND_HEADER: "1"}
    deadline = asyncio.get_running_loop().time() + 30
    while conduit.state.unlocked and asyncio.get_running_loop().time() < deadline:
        await conduit.post("/api/cells", headers=background)
        await asyncio.sleep(0.05)
    assert not conduit.state.unlocked


async def test_errors_never_show_a_traceback(conduit) -> None:
    resp = await post(conduit, "/create/confirm", {"passphrase": "x", "passphrase2": "x"})
    text = await resp.text()
    assert resp.status == 400 and "Traceback" not in text and "start again" in text
    resp = await conduit.get("/no/such/page", headers=auth(conduit))
    assert resp.status == 404 and "no such page" in await resp.text()
    resp = await conduit.post("/home", headers=auth(conduit))
    assert resp.status == 405 and 'id="error"' in await resp.text()


async def test_static_assets(conduit) -> None:
    assert (await conduit.get("/static/conduit.js")).status == 200
    assert (await conduit.get("/static/conduit.css")).status == 200


# --- issue 15 item 3: headers that keep network content from becoming page content ---


def _csp(resp) -> dict[str, str]:
    policy = resp.headers.get("Content-Security-Policy", "")
    return {d.split()[0]: d.strip() for d in policy.split(";") if d.strip()}


async def test_pages_restrict_forms_and_base_and_are_not_sniffed(conduit) -> None:
    error_page = await conduit.post("/home", headers=auth(conduit))
    assert error_page.status == 405
    for path, resp in (
        ("/welcome", await conduit.get("/welcome", headers=auth(conduit))),
        ("/restore", await conduit.get("/restore", headers=auth(conduit))),
        ("the shell", await conduit.get("/restore")),
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
        assert resp.headers.get("Cache-Control") == "no-store" and resp.headers.get("Vary") == SECRET_HEADER, path


async def test_download_is_an_unsniffed_attachment(conduit, monkeypatch) -> None:
    """A stored file whose bytes are HTML must never be rendered by the browser as a conduit page."""
    import sys

    from borgusb.conduit import app as conduit_app
    from borgusb.conduit.network import Served

    await restore(conduit)
    app = conduit.server.app
    route = next(
        r
        for r in app.router.routes()
        if r.resource is not None and r.resource.canonical == "/api/storage/{id}/download" and r.method == "POST"
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
    resp = await conduit.post(f"/api/storage/{oid}/download", headers=auth(conduit))
    assert resp.status == 200 and await resp.read() == evil
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Type"] == "application/octet-stream"
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and disposition.count('"') == 2 and "page.html" in disposition


# --- issue 15 item 9: only the browser tab that holds the secret can use the unlocked wallet ---

OID = "ab" * 32


@pytest.fixture
def network_calls(conduit, monkeypatch) -> list[str]:
    """Every attempt of the conduit to reach the network (or to make a client that would), recorded."""
    from borgusb.conduit import app as conduit_app

    network = conduit.server.app[conduit_app.NETWORK]
    calls: list[str] = []
    for name in ("use", "call", "refresh", "refresh_all", "registry", "client_for"):

        def record(*args, _name=name, **kwargs):
            calls.append(_name)
            raise AssertionError(f"the conduit reached the network ({_name})")

        monkeypatch.setattr(network, name, record)
    return calls


async def _as_a_local_process(client: TestClient, path: str, method: str = "GET", **kw):
    """What any program on the machine can do: plain requests to 127.0.0.1:PORT, no secret."""
    return await client.request(method, path, **kw)


async def test_a_local_process_learns_no_secret_and_no_private_data_from_any_page(conduit) -> None:
    await restore(conduit)
    secret, address = conduit.state.secret, derive_public(WORDS).doge_address
    gets = ["/", "/welcome", "/unlock", "/home", "/files", "/restore", "/api/session", f"/files/{OID}/download"]
    gets += ["/static/conduit.js", "/static/conduit.css", "/static/shell.html"]
    seen = []
    for path in gets:
        resp = await _as_a_local_process(conduit, path)
        seen.append((path, resp.status, await resp.text(), str(resp.headers)))
    for path, status, body, headers in seen:
        assert secret not in body and secret not in headers, path
        assert address not in body, f"{path} shows the wallet's address to anyone"
        assert status in (200, 401), path
    shell = (await conduit.get("/home")).headers, await (await conduit.get("/home")).text()
    assert 'id="app"' in shell[1] and 'src="/static/conduit.js"' in shell[1] and "Lock" not in shell[1]
    # and the pages the page script fetches with the secret never hold it either
    for path in ("/", "/home", "/files", "/unlock"):
        assert secret not in await page(conduit, path), path


async def test_lock_without_the_secret_fails_and_the_wallet_stays_unlocked(conduit) -> None:
    await restore(conduit)
    key = conduit.state.wallet.key
    # the attack of the issue: read whatever the pages give away, then post it back
    scraped: set[str] = set()
    for path in ("/", "/home", "/files", "/static/conduit.js"):
        scraped |= set(re.findall(r"[A-Za-z0-9_-]{32,}", await (await _as_a_local_process(conduit, path)).text()))
    attempts: list[dict] = [{}, {"data": {"token": "x"}}, {"headers": {SECRET_HEADER: "x" * 43}}]
    for value in scraped:
        attempts += [
            {"data": {"token": value}},
            {"headers": {"X-Borg-Token": value}},
            {"headers": {SECRET_HEADER: value}},
        ]
    same_origin = {"Origin": f"http://127.0.0.1:{conduit.port}"}
    answers = []
    for attempt in attempts:
        headers = {**same_origin, **attempt.get("headers", {})}
        resp = await _as_a_local_process(conduit, "/lock", "POST", data=attempt.get("data", {}), headers=headers)
        answers.append((attempt, resp.status, await resp.text()))
    assert conduit.state.unlocked and conduit.state.wallet.key is key and not key.closed
    for attempt, status, text in answers:
        assert status == 401 and "open that link" in text.lower(), attempt
    resp = await post(conduit, "/lock")  # the person's tab
    assert resp.url.path == "/unlock" and not conduit.state.unlocked


async def test_a_cross_site_download_makes_no_network_request_and_serves_nothing(conduit, network_calls) -> None:
    await restore(conduit)
    shell = await (await conduit.get("/static/shell.html")).read()
    # what another site's <a href>, <img src> or form can make the browser send: no custom header
    cross_site = {"Sec-Fetch-Site": "cross-site", "Referer": "https://attacker.example/"}
    answers = []
    for method, path in (
        ("GET", f"/files/{OID}/download"),
        ("HEAD", f"/files/{OID}/download"),
        ("GET", f"/api/storage/{OID}/download"),
        ("POST", f"/api/storage/{OID}/download"),
        ("POST", "/api/storage/list"),
        ("POST", f"/api/storage/{OID}/delete"),
    ):
        resp = await _as_a_local_process(conduit, path, method, headers=cross_site)
        answers.append((method, path, resp.status, await resp.read(), resp.headers))
    resp = await conduit.post("/api/storage/list", headers={**cross_site, "Origin": "https://attacker.example"})
    assert network_calls == [] and conduit.state.unlocked
    assert resp.status == 403
    for method, path, status, body, headers in answers:
        assert status in (200, 401), (method, path)
        assert status == 401 or body in (shell, b""), (method, path)  # only the shell, never a file
        assert headers.get("Content-Type", "").split(";")[0] in ("text/html", "text/plain", "application/json")
        assert "Content-Disposition" not in headers


async def test_no_get_reaches_the_network(conduit, network_calls) -> None:
    """Every GET route (the core's and every cell's), with the secret and an unlocked wallet: nothing is sent."""
    await restore(conduit)
    paths = set()
    for route in conduit.server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        if route.method != "GET" or "directory" in info:  # static files: no handler of ours
            continue
        paths.add(info.get("path") or info["formatter"].replace("{id}", OID))
    assert {"/", "/home", "/files", "/api/session"} <= paths
    statuses = {path: (await conduit.get(path, headers=auth(conduit), allow_redirects=False)).status for path in paths}
    assert network_calls == []
    assert all(status < 500 for status in statuses.values()), statuses
    assert {r.method for r in conduit.server.app.router.routes() if r.resource.canonical.startswith("/api/")} <= {
        "POST",
        "GET",
        "HEAD",
    }
    api_gets = {
        r.resource.canonical
        for r in conduit.server.app.router.routes()
        if r.method == "GET" and r.resource.canonical.startswith("/api/")
    }
    assert api_gets == {"/api/session"}  # the one API GET reads the conduit's own state


async def test_a_foreign_host_header_is_refused_even_with_the_secret(conduit) -> None:
    await restore(conduit)
    for host in (
        "attacker.example",
        f"attacker.example:{conduit.port}",
        f"127.0.0.1.attacker.example:{conduit.port}",
        f"127.0.0.1:{conduit.port + 1}",
        "",
    ):
        for method, path in (("GET", "/"), ("GET", "/static/conduit.js"), ("GET", "/api/session"), ("POST", "/lock")):
            resp = await conduit.request(method, path, headers={**auth(conduit), "Host": host})
            assert resp.status == 421, (host, method, path)
    assert conduit.state.unlocked
    for host in (f"127.0.0.1:{conduit.port}", f"localhost:{conduit.port}", f"[::1]:{conduit.port}"):
        resp = await conduit.get("/api/session", headers={**auth(conduit), "Host": host})
        assert resp.status == 200, host


async def test_a_wrong_secret_is_refused_not_answered_with_the_shell(conduit) -> None:
    await restore(conduit)
    wrong = {SECRET_HEADER: conduit.state.secret[:-1] + ("A" if conduit.state.secret[-1] != "A" else "B")}
    for method, path in (("GET", "/home"), ("GET", "/"), ("POST", "/lock"), ("GET", "/static/conduit.js")):
        resp = await conduit.request(method, path, headers=wrong)
        assert resp.status == 401, (method, path)
        assert resp.headers["WWW-Authenticate"].startswith("Borg-Conduit")
        assert f"http://127.0.0.1:{conduit.port}/#k=" in await resp.text()
    resp = await conduit.get("/home", headers={SECRET_HEADER: "é" * 43})  # not even ASCII: refused, no error
    assert resp.status == 401
    assert conduit.state.unlocked


async def test_requests_without_the_secret_do_not_keep_the_wallet_unlocked(conduit) -> None:
    """A local process polling the conduit must not hold off the idle lock."""
    await restore(conduit)
    conduit.state.idle_lock_s = 0.5
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while conduit.state.unlocked and loop.time() < deadline:
        await _as_a_local_process(conduit, "/")
        await _as_a_local_process(conduit, "/lock", "POST")
        await asyncio.sleep(0.05)
    assert not conduit.state.unlocked


async def test_the_secret_is_new_for_each_start_and_never_written(conduit, tmp_path: Path) -> None:
    await restore(conduit)
    other = ConduitState(tmp_path / "other.json")
    assert other.secret != conduit.state.secret and len(conduit.state.secret) >= 43  # 256 bits
    secret = conduit.state.secret.encode()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and secret in p.read_bytes()]
