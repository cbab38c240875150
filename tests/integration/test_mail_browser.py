"""The Mail page in Chromium (issue 17): mail written in one conduit is read in another.

Two `borgusb conduit` processes, each with its own wallet keystore, reach three real mail cells.
A's page writes to B's address (B's first listing published B's directory entry), is shown the key
and fingerprint it resolves to (B's display name, markup, as text) before it seals and sends;
B's page lists it as unread from a new sender, opens it (as text), marks it read, replies in its
thread; A's page shows the reply. The page as B sees it is docs/screenshots/mail.png.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
from pathlib import Path

import pytest

from borgusb.cells.mail.client import MailClient
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.identity import Wallet
from borgusb.keys import SigningKey
from borgusb.keystore import KdfParams, save_wallet
from borgusb.mail.directory import sign_entry
from borgusb.net.peer import PeerClient

from .browser import ARGS, CHROMIUM
from .conduit_proc import conduit_process

pytestmark = pytest.mark.slow

WORDS_A = " ".join(["abandon"] * 23 + ["art"])
WORDS_B = (
    "legal winner thank year wave sausage worth useful legal winner thank year "
    "wave sausage worth useful legal winner thank year wave sausage worth title"
)
PASSPHRASE = "correct horse battery"
N = 3
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "mail.png"


def run_async(coro):
    """Playwright's sync API owns this thread's event loop; run coroutines beside it."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def start(make_cluster):
    cells = make_cluster("mailTreeCell")
    cells.up(N)
    await cells.wait_one_tree(timeout_s=60, expect=N)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(d.get("mail", {}).get("members") == N for d in await cells.status()):
            return cells
        await asyncio.sleep(0.3)
    raise TimeoutError("the member views did not settle")


async def publish(ip: str, key: SigningKey, name: str) -> None:
    clock = SystemClock()
    async with PeerClient(key, clock, Verifier(clock), timeout_s=30) as peers:
        done = await MailClient(peers, ip).publish(sign_entry(key, clock.now_ms(), name).to_dict())
    assert done["stored"] == N, done


def keystore(tmp_path: Path, name: str, words: str) -> Path:
    path = tmp_path / name / "keystore.json"
    path.parent.mkdir()
    save_wallet(path, Wallet.from_mnemonic(words), PASSPHRASE, KdfParams(iterations=1, lanes=1, memory_kib=1024))
    return path


def test_mail_page_send_in_one_conduit_read_in_another(make_cluster, monkeypatch, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: ./build.sh test installs it")
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_MAIL_R", str(N))
    cells = run_async(start(make_cluster))
    b_wallet = Wallet.from_mnemonic(WORDS_B)
    b_key, b_addr = b_wallet.key.public_key_hex, b_wallet.key.doge_address
    hostile = '<img src=x onerror="document.body.dataset.pwned=1">'
    with (
        conduit_process(keystore(tmp_path, "a", WORDS_A), [cells.nodes[0].ip], tmp_path / "a.log") as link_a,
        conduit_process(keystore(tmp_path, "b", WORDS_B), [cells.nodes[1].ip], tmp_path / "b.log") as link_b,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            pages = {}
            for name, link in (("a", link_a), ("b", link_b)):
                page = pages[name] = browser.new_page(viewport={"width": 1200, "height": 1000})
                page.goto(link)
                page.fill("#passphrase", PASSPHRASE)
                page.click("#unlock")
                page.wait_for_selector("#address")
                page.click("nav >> text=Mail")
                page.wait_for_selector("#compose")
            a, b = pages["a"], pages["b"]
            expect(b.locator("#inbox tbody")).to_contain_text("No mail.", timeout=20_000)
            run_async(publish(cells.nodes[2].ip, b_wallet.key, hostile))  # a newer entry, a name with markup

            a.fill("#compose-to", b_addr)
            a.fill("#compose-subject", "Lunch on Friday?")  # leaving the field resolves the address
            a.fill("#compose-body", f"Shall we meet at noon?\n{hostile}")
            expect(a.locator("#compose-resolved")).to_contain_text(
                f'{b_addr} is key {b_key}, fingerprint {b_wallet.key.fingerprint} (calls themselves "{hostile}")',
                timeout=30_000,
            )
            assert a.evaluate("document.body.dataset.pwned") is None
            a.click("#compose-send")
            expect(a.locator("#compose-status")).to_have_text(
                re.compile(r"Sent .*kept by 3 of 3 holders"), timeout=30_000
            )

            b.click("nav >> text=Mail")  # shown again: the inbox is asked for at once
            row = b.locator("#inbox tbody tr", has_text="Lunch on Friday?")
            expect(row).to_contain_text("unread, new sender", timeout=30_000)
            row.locator("a.subject").click()
            expect(b.locator("#reader-body")).to_contain_text(hostile)  # as text, never markup
            expect(b.locator("#reader-flags")).to_contain_text("never read mail from")
            assert b.evaluate("document.body.dataset.pwned") is None
            expect(row).not_to_contain_text("unread", timeout=20_000)
            b.click("#reader-reply")
            expect(b.locator("#compose-thread")).to_contain_text("A reply to")
            b.fill("#compose-body", "Yes, see you there.")
            b.screenshot(path=str(SCREENSHOT), full_page=True)
            b.click("#compose-send")
            expect(b.locator("#compose-status")).to_contain_text("Sent", timeout=30_000)

            a.click("nav >> text=Mail")
            expect(a.locator("#inbox tbody tr", has_text="re: Lunch on Friday?")).to_contain_text(
                "reply", timeout=30_000
            )
        finally:
            browser.close()
