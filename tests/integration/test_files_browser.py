"""The Files page (the file manager) in Chromium, against real cells (issue 17, the conduit's part; issue 22).

Three addresses run shardTreeCell and ftreeFileMgrCell; nine run peerTreeNet, so Home's Cells table has
a cell with more than 8 endpoints and must say "… (1 more)". Conduit A1 makes a private folder, uploads
into it (a progress bar per file, the button disabled meanwhile), deletes a file and restores the
folder's earlier version, renames, and shares the folder read-only with B's key. Conduit A2, started
with nothing but a copy of A's keystore, lists that folder and downloads the file byte for byte; B
opens the share record and downloads it too; C, given the same record, cannot. A file named with
markup is listed as text. With the ftree nodes
gone the listing stays, marked "not refreshed" with the next step, and a failed upload says why with
no bar left. The page as A1 sees it is docs/screenshots/files.png.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from borgusb.identity import Wallet
from borgusb.keystore import KdfParams, save_wallet

from .browser import ARGS, CHROMIUM
from .conduit_proc import conduit_process

pytestmark = pytest.mark.slow

WORDS = {
    "a": " ".join(["abandon"] * 23 + ["art"]),
    "b": "legal winner thank year wave sausage worth useful legal winner thank year "
    "wave sausage worth useful legal winner thank year wave sausage worth title",
    "c": " ".join(["zoo"] * 23 + ["vote"]),
}
PASSPHRASE = "correct horse battery"
N, TREE_NODES = 3, 9
HOSTILE = '<img src=x onerror="document.body.dataset.pwned=1">.txt'
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "files.png"


def run_async(coro):
    """Playwright's sync API owns this thread's event loop; run coroutines beside it."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def start(make_cluster):
    shard, ftree, tree = make_cluster("shardTreeCell"), make_cluster("ftreeFileMgrCell"), make_cluster()
    shard.up(N)
    ftree.up(N)  # the same addresses: each cell on its own ports
    tree.up(TREE_NODES)
    for cluster, size in ((shard, N), (ftree, N), (tree, TREE_NODES)):
        await cluster.wait_one_tree(timeout_s=90, expect=size)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        s, f = await shard.status(), await ftree.status()
        if all(d.get("shard", {}).get("directory") == N for d in s) and all(
            d.get("files", {}).get("members") == N for d in f
        ):
            return shard, ftree
        await asyncio.sleep(0.3)
    raise TimeoutError("the clusters did not settle")


def keystore(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name / "keystore.json"
    path.parent.mkdir()
    save_wallet(
        path, Wallet.from_mnemonic(WORDS[name[0]]), PASSPHRASE, KdfParams(iterations=1, lanes=1, memory_kib=1024)
    )
    return path


def test_files_page_folders_versions_share_and_a_second_conduit(make_cluster, monkeypatch, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: ./build.sh test installs it")
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_SHARD_R", str(N))
    monkeypatch.setenv("BORGUSB_FILES_R", str(N))
    shard, ftree = run_async(start(make_cluster))
    ips = [n.ip for n in shard.nodes]
    a1 = keystore(tmp_path, "a1")
    (tmp_path / "a2").mkdir()  # another machine: nothing but a copy of the keystore
    a2 = Path(shutil.copy(a1, tmp_path / "a2" / "keystore.json"))
    b_key = Wallet.from_mnemonic(WORDS["b"]).key.public_key_hex
    payload = os.urandom(2_500_000)
    (tmp_path / "holiday.bin").write_bytes(payload)
    (tmp_path / "notes.txt").write_text("notes\n")
    (tmp_path / HOSTILE).write_text("a name that is markup\n")

    with (
        conduit_process(a1, [ips[0]], tmp_path / "a1.log") as link_a1,
        conduit_process(a2, [ips[1]], tmp_path / "a2.log") as link_a2,
        conduit_process(keystore(tmp_path, "b"), [ips[2]], tmp_path / "b.log") as link_b,
        conduit_process(keystore(tmp_path, "c"), [ips[0]], tmp_path / "c.log") as link_c,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            prompt = ["notes-2.txt"]  # what a person types into the page's one prompt (a rename)

            def opened(link: str):
                page = browser.new_page(viewport={"width": 1200, "height": 1000})
                page.on("dialog", lambda d: d.accept(prompt[0]) if d.type == "prompt" else d.accept())
                page.goto(link)
                page.fill("#passphrase", PASSPHRASE)
                page.click("#unlock")
                page.wait_for_selector("#address")
                return page

            def files(page, folder: str | None = None):
                page.click("nav >> text=Files")
                expect(page.locator("#folder-note")).to_contain_text("Refreshed", timeout=30_000)
                if folder:
                    page.click(f"#listing tr[data-name='{folder}'] a.folder")
                    expect(page.locator("#crumbs")).to_contain_text(folder)
                    expect(page.locator("#folder-note")).to_contain_text("Refreshed", timeout=30_000)

            def row(page, name: str):
                return page.locator(f"#listing tr[data-name='{name}']")

            def upload(page, name: str) -> None:
                page.set_input_files("#put-input", str(tmp_path / name))
                page.click("#put-button")
                assert page.is_disabled("#put-button")  # one upload at a time
                expect(page.locator(f"#transfers li[data-name='{name}']").first).to_have_attribute(
                    "data-state", "done", timeout=90_000
                )
                assert page.locator(f"#transfers li[data-name='{name}'] progress").first.get_attribute("value") == "100"
                expect(row(page, name)).to_be_visible(timeout=30_000)

            def download(page, button) -> bytes:
                with page.expect_download(timeout=90_000) as got:
                    button.click()
                return Path(got.value.path()).read_bytes()

            a = opened(link_a1)
            # Home: nine peerTreeNet endpoints, eight shown and the rest said
            cells_row = a.locator("#cells tbody tr", has_text="peerTreeNet")
            expect(cells_row).to_contain_text("… (1 more)", timeout=30_000)
            assert len(cells_row.locator("td.mono").inner_text().split(", ")) == 9  # 8 addresses and "… (1 more)"

            files(a)
            expect(a.locator("#put-vis input[value=private]")).to_be_checked()  # private by default
            a.fill("#mkdir-name", "docs")
            a.click("#mkdir-button")
            expect(row(a, "docs")).to_contain_text("private", timeout=30_000)
            a.click("#listing tr[data-name='docs'] a.folder")
            expect(a.locator("#crumbs")).to_contain_text("Your files / docs")
            upload(a, "holiday.bin")
            expect(row(a, "holiday.bin")).to_contain_text("private")
            upload(a, "notes.txt")

            # a delete, then the version that had the file restored as the newest
            row(a, "notes.txt").locator(".delete").click()
            expect(row(a, "notes.txt")).to_have_count(0, timeout=30_000)
            a.click("#folder-versions")
            expect(a.locator("#versions tbody tr").first).to_contain_text("current", timeout=30_000)
            versions = a.locator("#versions tbody tr")
            assert versions.count() == 4  # made, holiday.bin, notes.txt, the delete
            a.locator("#versions tr[data-version='3'] .restore").click()
            expect(row(a, "notes.txt")).to_be_visible(timeout=30_000)
            expect(a.locator("#versions tbody tr")).to_have_count(5, timeout=30_000)

            # rename (the page asks for the new name; the prompt is answered "notes-2.txt")
            row(a, "notes.txt").locator(".move").click()
            expect(row(a, "notes-2.txt")).to_be_visible(timeout=30_000)
            expect(row(a, "notes.txt")).to_have_count(0)

            # share the folder read-only with B
            a.fill("#share-path", "/docs")
            a.fill("#share-to", b_key)
            a.click("#share-button")
            expect(a.locator("#share-record")).to_be_visible(timeout=30_000)
            record = a.locator("#share-record").input_value()
            assert b_key in record and "holiday.bin" not in record  # names stay inside the sealed folder
            expect(a.locator("#readers")).to_contain_text(b_key[:16], timeout=30_000)
            a.screenshot(path=str(SCREENSHOT), full_page=True)

            # a second conduit with only the keystore: the folder and the file, byte for byte
            a2_page = opened(link_a2)
            files(a2_page, "docs")
            expect(row(a2_page, "holiday.bin")).to_contain_text("2.4 MiB")
            assert download(a2_page, row(a2_page, "holiday.bin").locator(".download")) == payload
            expect(a2_page.locator("#download-progress")).to_have_attribute("value", "100")

            # B opens the share and reads the file; C, with the same record, cannot
            b = opened(link_b)
            files(b)
            b.fill("#shared-record", record)
            b.click("#shared-open")
            shared = b.locator("#shared-list tr[data-name='holiday.bin']")
            expect(shared).to_be_visible(timeout=30_000)
            assert download(b, shared.locator(".download")) == payload
            c = opened(link_c)
            files(c)
            c.fill("#shared-record", record)
            c.click("#shared-open")
            expect(c.locator("#shared-note")).to_have_attribute("data-reason", "not_for_you", timeout=30_000)
            assert c.locator("#shared-list").is_hidden()

            # revoke B: the folder's next versions leave B out
            a.locator(f"#readers button[data-key='{b_key}']").click()
            expect(a.locator("#readers")).to_have_text("nobody", timeout=30_000)

            # a name from the network is text on the page, never markup
            a.click("#crumbs a[data-path='/']")
            expect(a.locator("#crumbs")).to_have_text("Your files")
            upload(a, HOSTILE)
            expect(row(a, HOSTILE).locator("td.name")).to_have_text(HOSTILE)
            assert a.evaluate("document.body.dataset.pwned") is None

            # the ftree nodes gone: the list stays, marked, with the next step; an upload fails and says so
            for node in ftree.nodes:
                ftree.kill(node)
            a.click("#folder-refresh")
            expect(a.locator("#folder-note")).to_contain_text("Not refreshed", timeout=90_000)
            assert "borgusb cluster up" in a.inner_text("#folder-note")
            assert a.get_attribute("#listing", "data-state") == "stale"
            assert row(a, HOSTILE).count() == 1 and row(a, "docs").count() == 1
            a.set_input_files("#put-input", str(tmp_path / "notes.txt"))
            a.click("#put-button")
            failed = a.locator("#transfers li[data-state='failed']")
            expect(failed).to_contain_text(re.compile("no_node|did not answer"), timeout=90_000)
            assert failed.locator("progress").count() == 0
            # enabled again once the folder's refresh after the upload has also failed (the nodes are gone)
            expect(a.locator("#put-button")).to_be_enabled(timeout=90_000)
        finally:
            browser.close()
