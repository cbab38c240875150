"""End to end in a real browser: Debian's chromium driven headless by Playwright.

Against a conduit process connected to a small real cluster, opened the way a
person opens it, with the link it printed (``http://127.0.0.1:PORT/#k=…``):
create a wallet, confirm words, see the tree drawing with the right node
count, stored objects (the Storage page), lock and unlock. The secret leaves the address bar at once and
goes with every request as a header, never in a served page; a tab opened
without the link gets nothing. Screenshots of the main pages go to
docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from pathlib import Path

import pytest

from borgusb.conduit import launch

from .browser import ARGS, CHROMIUM
from .conduit_proc import conduit_process

pytestmark = pytest.mark.slow

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def run_async(coro):
    """Playwright's sync API owns this thread's event loop; run coroutines beside it."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: ./build.sh test installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        try:
            yield page
        finally:
            browser.close()


def test_wallet_tree_files_lock_unlock_in_chromium(make_cluster, browser_page, tmp_path: Path, monkeypatch) -> None:
    from playwright.sync_api import expect

    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "shards"))
    cluster = make_cluster()
    cluster.up(5)
    shards = make_cluster("shardTreeCell")
    shards.up(3)
    run_async(cluster.wait_one_tree(timeout_s=40, expect=5))
    run_async(shards.wait_one_tree(timeout_s=40, expect=3))

    async def directories_full() -> None:  # placement needs every shard node to know the others
        for _ in range(100):
            if all(d.get("shard", {}).get("directory") == 3 for d in await shards.status()):
                return
            await asyncio.sleep(0.2)

    run_async(directories_full())
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser_page

    with conduit_process(tmp_path / "stick" / "keystore.json", [cluster.nodes[0].ip], tmp_path / "conduit.log") as link:
        (tmp_path / "stick").mkdir(exist_ok=True)
        url, secret = link.split("/#k=")
        requests: list = []
        page.on("request", lambda r: requests.append(r) if r.url.startswith(url) else None)
        page.goto(link)
        page.wait_for_selector("#create")
        # the secret left the address bar and the history entry at once; the tab keeps it for itself
        assert page.url == url + "/welcome" and page.evaluate("location.hash") == ""
        assert page.evaluate("sessionStorage.getItem('borg-conduit')") == secret
        page.screenshot(path=str(SHOTS / "welcome.png"))

        page.click("#create")
        page.wait_for_selector("#words")
        words = page.locator("#words .w").all_inner_texts()
        assert len(words) == 24
        page.click("#to-check")  # the words leave the page while three of them are asked back
        page.wait_for_selector("#check-form")
        for field in page.locator("input[name^=word]").all():
            n = int(field.get_attribute("name")[4:])
            field.fill(words[n - 1])
        page.fill("#passphrase", "correct horse battery")
        page.fill("#passphrase2", "correct horse battery")
        page.click("#confirm")

        page.wait_for_selector("#address")
        page.wait_for_selector('#tree[data-count="5"]', timeout=20_000)
        assert page.locator("#tree circle").count() == 5
        assert page.locator("#tree circle.root").count() == 1
        assert page.locator("#tree circle.me").count() == 1
        address = page.inner_text("#address")
        assert address.startswith("D")
        # a selector, not wait_for_function: the page's CSP forbids the eval its string form polls with
        # (it passed only when the table was already filled at the first check)
        page.wait_for_selector("#cells tbody tr", timeout=30_000)
        page.screenshot(path=str(SHOTS / "home.png"), full_page=True)

        # storage (plain objects): upload with a progress bar, list, download and compare bytes, delete
        payload = os.urandom(2_500_000)
        (tmp_path / "holiday.bin").write_bytes(payload)
        page.click("nav >> text=Storage")
        page.wait_for_selector("#upload-form")
        page.set_input_files("#file-input", str(tmp_path / "holiday.bin"))
        page.click("#upload")
        page.wait_for_selector("#upload-status:has-text('Stored holiday.bin: each shard in 3 of 3')", timeout=60_000)
        assert page.get_attribute("#upload-progress", "value") == "100"
        row = page.locator("#files tbody tr", has_text="holiday.bin")
        row.wait_for(timeout=20_000)
        # the paid-ahead card below counts the new copies this holder keeps of the wallet's (free here)
        expect(page.locator("#usage.ok")).to_contain_text("2.4 MiB of yours held here", timeout=30_000)
        page.screenshot(path=str(SHOTS / "storage.png"), full_page=True)
        with page.expect_download(timeout=60_000) as download:
            row.locator(".download").click()
        assert Path(download.value.path()).read_bytes() == payload
        row.locator(".stat").click()
        page.wait_for_selector("#file-detail:has-text('copies')")
        assert "at least 3 of 3 copies" in page.inner_text("#file-detail")
        page.once("dialog", lambda dialog: dialog.accept())
        row.locator(".delete").click()
        row.wait_for(state="detached", timeout=20_000)

        page.click("#lock")
        page.wait_for_selector("#unlock")
        page.fill("#passphrase", "not it")
        page.click("#unlock")
        assert "wrong passphrase" in page.inner_text("[role=alert]")
        page.screenshot(path=str(SHOTS / "unlock.png"))
        page.fill("#passphrase", "correct horse battery")
        page.click("#unlock")
        page.wait_for_selector("#address")
        assert page.inner_text("#address") == address

        # a reload keeps the tab's secret; the page it shows never held it
        page.reload()
        page.wait_for_selector("#address")
        assert secret not in page.content()
        # every request of the page script carried it; no address the browser went to did
        fetched = [r for r in requests if r.resource_type in ("fetch", "xhr")]
        assert fetched and [r.url for r in fetched if r.all_headers().get("x-borg-conduit") != secret] == []
        assert all(secret not in r.url for r in requests) and all(
            r.method == "GET" for r in requests if r.is_navigation_request()
        )
        assert not [r.url for r in requests if r.method == "GET" and "/api/" in r.url and "/api/session" not in r.url]

        # another tab (another browser profile) at the same address, without the link: nothing
        stranger = page.context.browser.new_page()
        stranger.goto(url + "/home")
        stranger.wait_for_selector("#need-link")
        assert address not in stranger.content() and page.is_visible("#address")
        stranger.close()

        # what `--open` does: a private page in RAM forwards the browser to the link
        forward = tmp_path / "open.html"
        forward.write_text(launch.forwarding_page(link))
        opened = page.context.browser.new_page()
        opened.goto(forward.as_uri())
        opened.wait_for_selector("#address")
        assert opened.url == url + "/home" and opened.inner_text("#address") == address
        opened.close()
