"""The Storage page (the shard cell's) in Chromium against five real shard nodes (issue 22, "Files page").

Copies and holders said consistently (copies per shard out of R; holders the
nodes keeping at least one shard, each shard's listed), Upload and Delete
disabled while they run (a double click sends once and asks once), and with
every shard node gone: the list kept and marked "not refreshed" with the next
step, also after leaving the page and coming back; a failed upload leaves no
full progress bar; an upload of bytes another key already stored says so.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from borgusb.identity import Wallet
from borgusb.keystore import KdfParams, save_wallet

from .browser import ARGS, CHROMIUM
from .conduit_proc import conduit_process

pytestmark = pytest.mark.slow

WORDS = (
    "legal winner thank year wave sausage worth useful legal winner thank year "
    "wave sausage worth useful legal winner thank year wave sausage worth title"
)
PASSPHRASE = "correct horse battery"
N = 5


def run_async(coro):
    """Playwright's sync API owns this thread's event loop; run coroutines beside it."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def start(make_cluster):
    shards = make_cluster("shardTreeCell")
    shards.up(N)
    await shards.wait_one_tree(timeout_s=60, expect=N)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # placement needs every shard node to know the others
        if all(d.get("shard", {}).get("directory") == N for d in await shards.status()):
            return shards
        await asyncio.sleep(0.2)
    raise TimeoutError("shard directories did not fill")


def test_files_page_copies_holders_busy_buttons_and_no_network(make_cluster, monkeypatch, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: ./build.sh test installs it")
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "shards"))
    shards = run_async(start(make_cluster))
    keystore = tmp_path / "stick" / "keystore.json"
    keystore.parent.mkdir()
    save_wallet(keystore, Wallet.from_mnemonic(WORDS), PASSPHRASE, KdfParams(iterations=1, lanes=1, memory_kib=1024))
    (tmp_path / "holiday.bin").write_bytes(os.urandom(2_500_000))  # three shards of 1 MiB
    (tmp_path / "notes.txt").write_bytes(os.urandom(5_000))

    with (
        conduit_process(keystore, [shards.nodes[0].ip], tmp_path / "conduit.log") as link,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            url = link.split("/#k=")[0]
            posts: list[str] = []
            page.on("request", lambda r: posts.append(r.url[len(url) :]) if r.method == "POST" else None)
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
            page.goto(link)
            page.fill("#passphrase", PASSPHRASE)
            page.click("#unlock")
            page.wait_for_selector("#address")
            page.click("nav >> text=Storage")
            page.wait_for_selector("#upload-form")
            expect(page.locator("#files-note")).to_contain_text("Refreshed", timeout=20_000)

            # an upload disables its button until it is done: a second submit sends nothing
            page.set_input_files("#file-input", str(tmp_path / "holiday.bin"))
            page.click("#upload")
            assert page.is_disabled("#upload")
            page.dispatch_event("#upload-form", "submit")
            expect(page.locator("#upload-status")).to_have_text(
                re.compile(r"Stored holiday\.bin: each shard in 3 of 3 copies"), timeout=60_000
            )
            assert posts.count("/api/storage") == 1 and page.is_enabled("#upload")
            page.set_input_files("#file-input", str(tmp_path / "notes.txt"))
            page.click("#upload")
            expect(page.locator("#upload-status")).to_contain_text("Stored notes.txt", timeout=60_000)

            # copies and holders, visible in the list and consistent with each shard's holders
            row = page.locator("#files tbody tr", has_text="holiday.bin")
            expect(row.locator(".copies")).to_have_text("3 of 3", timeout=30_000)
            holders = row.locator(".holders")
            expect(holders).to_have_text(re.compile(r"^[345] nodes$"))
            row.locator(".stat").click()
            expect(page.locator("#file-detail div")).to_have_count(4, timeout=30_000)
            listed = set(holders.get_attribute("title").split(", "))  # the row, from the same stat as the detail
            lines = page.locator("#file-detail div").all_inner_texts()
            assert (
                f"3 shards, each kept in at least 3 of 3 copies on {len(listed)} nodes in all; owner: you" in lines[0]
            )
            per_shard = [re.fullmatch(r"shard \d: 3 copies on (.+)", line) for line in lines[1:]]
            assert all(per_shard), lines
            assert set().union(*(set(m.group(1).split(", ")) for m in per_shard)) == listed
            assert int(holders.inner_text().split()[0]) == len(listed)
            page.screenshot(path=str(tmp_path / "files-detail.png"), full_page=True)

            # a double click on Delete asks once and deletes once
            notes = page.locator("#files tbody tr", has_text="notes.txt")
            notes.locator(".delete").dblclick()
            notes.wait_for(state="detached", timeout=30_000)
            assert len(dialogs) == 1 and sum(1 for u in posts if u.endswith("/delete")) == 1

            # the same bytes as another key's object: refused at once, saying so
            theirs = tmp_path / "theirs.bin"
            theirs.write_bytes(os.urandom(4_000))
            other = subprocess.run(
                [sys.executable, "-m", "borgusb.cli", "put", str(theirs), "--node", shards.nodes[1].ip, "-q"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert other.returncode == 0, other.stderr
            page.set_input_files("#file-input", str(theirs))
            page.click("#upload")
            expect(page.locator("#upload-status.message")).to_contain_text("owned by another key", timeout=60_000)
            assert "(other_owner)" in page.inner_text("#upload-status") and page.is_hidden("#upload-progress")

            # every shard node gone: the list stays, marked as not refreshed, with what to do
            for node in shards.nodes:
                shards.kill(node)
            page.click("#files-refresh")
            expect(page.locator("#files-note")).to_contain_text("Not refreshed", timeout=60_000)
            assert "borgusb cluster up" in page.inner_text("#files-note")
            assert page.get_attribute("#files", "data-state") == "stale"
            assert page.locator("#files tbody tr", has_text="holiday.bin").count() == 1

            # a failed upload: the error, no full progress bar, the button usable again
            page.set_input_files("#file-input", str(tmp_path / "notes.txt"))
            page.click("#upload")
            expect(page.locator("#upload-status.message")).to_contain_text("No shard node", timeout=60_000)
            assert page.is_hidden("#upload-progress") and page.is_enabled("#upload")

            # leaving the page and coming back: the conduit's last list, still marked
            page.click("nav >> text=Home")
            page.wait_for_selector("#address")
            page.click("nav >> text=Storage")
            expect(page.locator("#files-note")).to_contain_text("The list below is from", timeout=60_000)
            assert page.locator("#files tbody tr", has_text="holiday.bin").count() == 1
        finally:
            browser.close()
