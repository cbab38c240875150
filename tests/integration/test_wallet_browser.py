"""The conduit's Wallet page in Chromium against five real peerPaysCell processes.

Alice (a test key) is funded through the TEST-ONLY work setting and pays the
wallet 50 Shells; in the browser the wallet sees the quorum-agreed balance and
the payment, pays Alice back by her address (known from the history) through
the review and confirmation steps, sees the refusals with their reason words
(bad amount, unknown account, insufficient funds), a cancelled review that
sends nothing, and, with two holders killed, a balance shown as unknown with its
reason, never a number. On the Agents page, with an agent cell started, the wallet pays that node 2 Shells
ahead for thinking time (review, pay, credited once the node's ledger checked it), and on the Watch
page, with an fStream cell started, 1 Shell ahead for streaming, and on the Storage page, with a shard
cell started, 0.5 Shell ahead to that holder. The screenshots docs/screenshots/wallet*.png,
agents-credit.png, watch-credit.png and storage-credit.png are taken here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any

import pytest

from borgusb.identity import Wallet
from borgusb.keys import SigningKey
from borgusb.keystore import KdfParams, save_wallet
from borgusb.ledger import UNITS_PER_SHELL, ZERO_HASH, address, sign_reward, sign_transfer

from .browser import ARGS, CHROMIUM
from .conduit_proc import conduit_process
from .test_peerpays_cluster import CLOCK, WORK, balance, send, start

pytestmark = pytest.mark.slow

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WORDS = (
    "legal winner thank year wave sausage worth useful legal winner thank year "
    "wave sausage worth useful legal winner thank year wave sausage worth title"
)
PASSPHRASE = "correct horse battery"
SHELL = UNITS_PER_SHELL
REFUSED_BALANCE = {"disagreement", "too_few_members", "view_mismatch", "no_quorum", "no_node"}


def run_async(coro):
    """Playwright's sync API owns this thread's event loop; run coroutines beside it."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def fund(ips: list[str], alice: SigningKey, wallet: str) -> None:
    """Alice gets 1000 Shells from the reserve (test-only work), then pays the wallet 50."""
    await send(ips[1], sign_reward(alice, seq=1, prev=ZERO_HASH, amount=1000 * SHELL, ref=WORK, ts=CLOCK.now_ms()))
    await send(ips[2], sign_transfer(alice, seq=1, prev=ZERO_HASH, to=wallet, amount=50 * SHELL, ts=CLOCK.now_ms()))


def pay_ahead(page: Any, amount: str, words: list[str]) -> None:
    """Pay `amount` Shells ahead on the page's paid-ahead card: reviewed (naming `words`), paid, credited."""
    from playwright.sync_api import expect

    page.fill("#credit-amount", amount)
    page.click("#credit-review")
    page.wait_for_selector("#credit-confirm:not([hidden])")
    what = page.inner_text("#credit-what")
    assert all(w in what for w in words), what
    page.click("#credit-yes")
    expect(page.locator("#credit-status.ok")).to_contain_text("Credited.", timeout=60_000)
    expect(page.locator("#usage")).to_contain_text(f"credit {amount} Shells (paid {amount}, used 0)", timeout=30_000)


def test_wallet_balance_history_send_and_refusals_in_chromium(make_cluster, monkeypatch, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: ./build.sh test installs it")
    from playwright.sync_api import expect, sync_playwright

    cluster = run_async(start(make_cluster, monkeypatch, tmp_path))
    ips = [n.ip for n in cluster.nodes]
    keystore = tmp_path / "stick" / "keystore.json"
    keystore.parent.mkdir()
    wallet = Wallet.from_mnemonic(WORDS)
    me = wallet.key.public_key_hex
    save_wallet(keystore, wallet, PASSPHRASE, KdfParams(iterations=1, lanes=1, memory_kib=1024))
    alice = SigningKey.generate()
    run_async(fund(ips, alice, me))
    SHOTS.mkdir(parents=True, exist_ok=True)

    with (
        conduit_process(keystore, [ips[0]], tmp_path / "conduit.log") as link,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(link)
            page.wait_for_selector("#unlock")
            page.fill("#passphrase", PASSPHRASE)
            page.click("#unlock")
            page.wait_for_selector("#address")
            page.click("nav >> text=Wallet")
            page.wait_for_selector("#send-form")
            assert (
                page.inner_text("#account-key") == me
                and page.inner_text("#account-address") == wallet.public.doge_address
            )

            # the quorum-agreed balance and the payment in
            expect(page.locator("#balance")).to_have_text("50 Shells", timeout=30_000)
            assert page.get_attribute("#balance", "data-state") == "agreed"
            assert "agreed by 5 holders (quorum 4)" in page.inner_text("#balance-note")
            incoming = page.locator("#history tbody tr.in")
            expect(incoming).to_have_count(1, timeout=20_000)
            assert "+50" in incoming.inner_text() and address(alice.public_key_hex) in incoming.inner_text()

            # a bad amount and an unknown address are refused at the review, with their reason words
            page.fill("#send-to", alice.public_key_hex)
            page.fill("#send-amount", "1.123456789")
            page.click("#send-review")
            expect(page.locator("#send-status[data-reason=bad_amount]")).to_contain_text("fractional")
            assert page.is_hidden("#send-confirm")
            page.fill("#send-to", address(SigningKey.generate().public_key_hex))
            page.fill("#send-amount", "1")
            page.click("#send-review")
            expect(page.locator("#send-status[data-reason=unknown_account]")).to_contain_text("public key")

            # a review that is cancelled sends nothing
            page.fill("#send-to", alice.public_key_hex)
            page.fill("#send-amount", "3")
            page.click("#send-review")
            page.wait_for_selector("#send-confirm:not([hidden])")
            page.click("#send-cancel")
            expect(page.locator("#send-status")).to_have_text("Cancelled: nothing was sent.")

            # pay Alice back by her address (the history made it known): review, confirm, result
            page.fill("#send-to", address(alice.public_key_hex))
            page.fill("#send-amount", "12.5")
            page.click("#send-review")
            page.wait_for_selector("#send-confirm:not([hidden])")
            assert page.inner_text("#confirm-shells") == "12.5" and page.is_hidden("#send-form")
            assert page.inner_text("#confirm-address") == address(alice.public_key_hex)
            assert page.inner_text("#confirm-key") == alice.public_key_hex
            page.screenshot(path=str(SHOTS / "wallet-confirm.png"), full_page=True)
            page.click("#send-confirm-yes")
            expect(page.locator("#send-status.ok")).to_contain_text("Sent 12.5 Shells to", timeout=60_000)
            expect(page.locator("#balance")).to_have_text("37.5 Shells", timeout=30_000)
            expect(page.locator("#history tbody tr.out")).to_have_count(1, timeout=20_000)
            assert "−12.5" in page.inner_text("#history tbody tr.out")
            page.screenshot(path=str(SHOTS / "wallet.png"), full_page=True)
            assert (
                run_async(balance(ips[3], alice.public_key_hex))["balance"] == 1000 * SHELL - 50 * SHELL + 1250_000_000
            )

            # more than the balance: reviewed, then refused by the holders with its reason
            page.fill("#send-to", alice.public_key_hex)
            page.fill("#send-amount", "100")
            page.click("#send-review")
            page.click("#send-confirm-yes")
            expect(page.locator("#send-status[data-reason=insufficient_funds]")).to_contain_text(
                "Insufficient funds", timeout=60_000
            )
            expect(page.locator("#balance")).to_have_text("37.5 Shells", timeout=30_000)

            # thinking time paid ahead on the Agents page: the node named by its agent cell, reviewed, paid,
            # checked by that node's ledger and credited (docs/ledger.md, "Paying for compute")
            monkeypatch.setenv("BORGUSB_AGENT_MONITOR_S", "0")
            agents = make_cluster("borgAgentCell")
            agents.up(1)
            page.click("nav >> text=Agents")
            expect(page.locator("#usage.ok")).to_contain_text(
                "30 min of 30 min free thinking left today", timeout=60_000
            )
            assert "credit 0 Shells" in page.inner_text("#usage")
            page.fill("#credit-amount", "0")
            page.click("#credit-review")
            expect(page.locator("#credit-status[data-reason=bad_amount]")).to_be_visible()
            node = run_async(agents.status())[0]["node"]
            pay_ahead(page, "2", ["Pay 2 Shells to node " + node[:12], "agent cell", "thinking time"])
            expect(page.locator("#agents-note")).to_contain_text("agent(s) on", timeout=30_000)  # the list, refreshed
            page.screenshot(path=str(SHOTS / "agents-credit.png"), full_page=True)
            assert run_async(balance(ips[2], node))["balance"] == 2 * SHELL
            page.click("nav >> text=Wallet")
            expect(page.locator("#balance")).to_have_text("35.5 Shells", timeout=30_000)

            # streaming paid ahead on the Watch page, the same card with the fStream cell's words and routes
            # (docs/ledger.md, "Paying for streams")
            fstream = make_cluster("fStreamCell")
            fstream.up(1)
            page.click("nav >> text=Watch")
            expect(page.locator("#usage.ok")).to_contain_text(
                "4.00 GiB of 4.00 GiB free streaming left today", timeout=60_000
            )
            streamer = run_async(fstream.status())[0]["node"]
            pay_ahead(page, "1", ["Pay 1 Shells to node " + streamer[:12], "fStream cell", "streaming"])
            # the Earnings card found the fStream cell (looked again while it knew none): nothing to claim
            expect(page.locator("#earn-state")).to_contain_text("Nobody else played your public media", timeout=30_000)
            expect(page.locator("#earn-claim")).to_be_disabled()
            page.screenshot(path=str(SHOTS / "watch-credit.png"), full_page=True)
            page.click("nav >> text=Wallet")
            expect(page.locator("#balance")).to_have_text("34.5 Shells", timeout=30_000)

            # storage beyond the free share, paid ahead to the holder on the Storage page (the same card)
            holders = make_cluster("shardTreeCell")
            holders.up(1)
            page.click("nav >> text=Storage")
            expect(page.locator("#usage.ok")).to_contain_text(
                "0.0 MiB of yours held here, 1024.0 MiB of it kept free", timeout=60_000
            )
            pay_ahead(page, "0.5", ["Pay 0.5 Shells to node ", "shard cell", "for storage"])
            page.click("#files-refresh")  # the list, asked again now that a shard node runs
            expect(page.locator("#files[data-state=fresh]")).to_have_count(1, timeout=30_000)
            page.screenshot(path=str(SHOTS / "storage-credit.png"), full_page=True)
            page.click("nav >> text=Wallet")
            expect(page.locator("#balance")).to_have_text("34 Shells", timeout=30_000)

            # two holders gone (4 of 5 must agree): the balance is unknown, with the reason, never the last number
            cluster.kill(cluster.nodes[3])
            cluster.kill(cluster.nodes[4])
            expect(page.locator("#balance[data-state=refused]")).to_have_text("unknown", timeout=90_000)
            assert page.get_attribute("#balance-note", "data-reason") in REFUSED_BALANCE
            page.screenshot(path=str(SHOTS / "wallet-refused.png"), full_page=True)
        finally:
            browser.close()
