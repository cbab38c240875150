"""The conduit's Exchange page in Chromium against three real btraderOrganCell processes.

The wallet sees its Doge deposit address with its QR code, places a sell order through the
review and confirmation steps (a bad price refused at the review with its reason word), sees
it in the book as its own; Bob (a test key) buys part of it through another replica, and the
fill appears with its swap state; a second order is cancelled through the page's confirmation.
Network text (Bob's address, ids) is shown as text. The screenshot docs/screenshots/exchange.png
is taken here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from borgusb.exchange.order import sign_order
from borgusb.identity import Wallet
from borgusb.keys import SigningKey
from borgusb.keystore import KdfParams, save_wallet
from borgusb.ledger import address

from .browser import ARGS, CHROMIUM
from .conduit_proc import conduit_process
from .test_btrader_cluster import CLOCK, SHELL, call
from .test_wallet_browser import PASSPHRASE, WORDS, run_async

pytestmark = pytest.mark.slow

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def test_exchange_page_in_chromium(make_cluster, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: ./build.sh test installs it")
    from playwright.sync_api import expect, sync_playwright

    cluster = make_cluster("btraderOrganCell")
    cluster.up(3)
    run_async(cluster.wait_one_tree(timeout_s=60, expect=3))
    ips = [n.ip for n in cluster.nodes]
    keystore = tmp_path / "stick" / "keystore.json"
    keystore.parent.mkdir()
    wallet = Wallet.from_mnemonic(WORDS)
    save_wallet(keystore, wallet, PASSPHRASE, KdfParams(iterations=1, lanes=1, memory_kib=1024))
    bob = SigningKey.generate()
    SHOTS.mkdir(parents=True, exist_ok=True)

    with (
        conduit_process(keystore, [ips[0]], tmp_path / "conduit.log") as link,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1100})
            page.goto(link)
            page.wait_for_selector("#unlock")
            page.fill("#passphrase", PASSPHRASE)
            page.click("#unlock")
            page.wait_for_selector("#address")
            page.click("nav >> text=Exchange")
            page.wait_for_selector("#order-form")
            assert page.inner_text("#deposit-address") == wallet.public.doge_address
            assert (page.get_attribute("#deposit-qr", "src") or "").startswith("data:image/svg+xml")
            expect(page.locator("#book tbody")).to_contain_text("No orders yet.", timeout=20_000)

            # a price that is not a number of DOGE is refused at the review, with its reason word
            page.select_option("#order-side", "sell")
            page.fill("#order-amount", "5")
            page.fill("#order-price", "2.123456789")
            page.click("#order-review")
            expect(page.locator("#order-status[data-reason=bad_amount]")).to_contain_text("fractional")
            assert page.is_hidden("#order-confirm")

            # review, confirm: the order rests in the book as the wallet's own
            page.fill("#order-price", "2.5")
            page.click("#order-review")
            page.wait_for_selector("#order-confirm:not([hidden])")
            assert page.inner_text("#confirm-shells") == "5" and page.inner_text("#confirm-total") == "12.5"
            page.click("#order-confirm-yes")
            expect(page.locator("#order-status.ok")).to_contain_text("Placed: sell 5 Shells at 2.5 DOGE")
            expect(page.locator("#book tbody tr.mine")).to_have_count(1, timeout=20_000)

            # Bob buys 2 of them through another replica: a fill, shown with its swap state
            now = CLOCK.now_ms()
            bid = sign_order(
                bob, side="buy", amount=2 * SHELL, price=300_000_000, ts=now, expiry=now + 600_000, nonce=os.urandom(16)
            )
            run_async(call(ips[2], lambda c: c.place(bid)))
            expect(page.locator("#fills tbody tr.sold")).to_have_count(1, timeout=30_000)
            row = page.locator("#fills tbody tr.sold")
            assert "2" in row.locator("td").nth(1).inner_text() and row.locator("td").nth(2).inner_text() == "5"
            assert row.get_attribute("data-state") == "matching"
            assert row.locator("button.settle").count() == 0  # no Settle before the fill is final
            expect(page.locator("#book tbody tr.mine td.amount").first).to_have_text("3", timeout=20_000)

            # the settle door refuses a fill that is not final yet (asked of every replica) and one that is not ours
            (fill,) = run_async(call(ips[1], lambda c: c.fills()))["fills"]
            settle = """(fill) => Borg.api('/api/exchange/settle', {body: JSON.stringify({fill}),
                headers: {'Content-Type': 'application/json'}}).then(() => 'started', (e) => e.reason)"""
            assert page.evaluate(settle, fill["id"]) == "not_final"
            assert page.evaluate(settle, "ab" * 32) == "unknown_fill"

            # someone else's order shows its owner's address as text
            ask = sign_order(
                bob, side="sell", amount=SHELL, price=400_000_000, ts=now, expiry=now + 600_000, nonce=os.urandom(16)
            )
            run_async(call(ips[1], lambda c: c.place(ask)))
            expect(page.locator(f"#book tbody tr[data-id='{ask.id}']")).to_contain_text(
                address(bob.public_key_hex), timeout=20_000
            )

            # a second order, cancelled through the page's confirmation
            page.select_option("#order-side", "buy")
            page.fill("#order-amount", "1")
            page.fill("#order-price", "1")
            page.click("#order-review")
            page.click("#order-confirm-yes")
            expect(page.locator("#book tbody tr.mine")).to_have_count(2, timeout=20_000)
            page.screenshot(path=str(SHOTS / "exchange.png"), full_page=True)
            mine_bid = page.locator("#book tbody tr.mine.bid")
            mine_bid.locator("button.cancel-order").click()
            mine_bid.locator("button.cancel-yes").click()
            expect(page.locator("#book-note.ok")).to_contain_text("Cancelled your buy of 1 Shells")
            expect(page.locator("#book tbody tr.mine")).to_have_count(1, timeout=20_000)
            deadline = time.monotonic() + 30
            while True:  # every replica has the same book after the cancel
                books = [run_async(call(ip, lambda c: c.book())) for ip in ips]
                if all(not b["bids"] and len(b["asks"]) == 2 for b in books):
                    break
                assert time.monotonic() < deadline, books
                page.wait_for_timeout(300)
        finally:
            browser.close()
