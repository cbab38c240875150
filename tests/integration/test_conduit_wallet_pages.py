"""Creating and restoring a wallet in a real browser (issue 22): Debian's chromium driven by Playwright.

Against a real conduit process (no network needed for these pages), opened with the link it printed:
one set of words per creation (a reload, Back and Forward show the same words), the words off the page
during the check with a way back to them, only the wrong field emptied, restore keeping the typed words
and marking the bad one with its suggestion, restore from the unlock page replacing the keystore after
a confirmation, and a damaged keystore said to be damaged before any passphrase is asked. Screenshots
of these pages go to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from borgusb.identity import derive_public

from .browser import ARGS, CHROMIUM
from .conduit_proc import conduit_process

pytestmark = pytest.mark.slow

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WORDS = ["abandon"] * 23 + ["art"]
PASS = "correct horse battery"


@pytest.fixture
def page() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: ./build.sh test installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        tab = browser.new_page(viewport={"width": 1200, "height": 900})
        dialogs: list[str] = []
        tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        try:
            yield tab
        finally:
            browser.close()
        assert dialogs == []  # never a "Confirm Form Resubmission" (nor any other dialog)


def shown_words(page: Any) -> list[str]:
    page.wait_for_selector("#words")
    return page.locator("#words .w").all_inner_texts()


def test_create_one_set_of_words_check_off_screen_only_wrong_field_cleared(page: Any, tmp_path: Path) -> None:
    (tmp_path / "stick").mkdir()
    keystore = tmp_path / "stick" / "keystore.json"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with conduit_process(keystore, [], tmp_path / "conduit.log") as link:
        url = link.split("/#k=")[0]
        page.goto(link)
        page.wait_for_selector("#create")
        page.goto(url + "/create")  # a GET of /create is a page (no creation under way: a button to start one)
        page.wait_for_selector("#create")
        assert "Method Not Allowed" not in page.content()

        page.click("#create")
        first = shown_words(page)
        assert len(first) == 24 and page.url == url + "/create"
        page.reload()
        assert shown_words(page) == first  # one set of words per creation
        page.click("#cancel")
        page.wait_for_selector("#restore")  # back on the welcome page
        page.click("#create")
        words = shown_words(page)
        assert words != first  # a cancelled creation's words are gone; a new one has its own
        footer = page.inner_text("footer")
        assert "never sees them" not in footer and "your wallet" in footer
        page.screenshot(path=str(SHOTS / "words.png"), full_page=True)

        page.click("#to-check")
        page.wait_for_selector("#check-form")
        assert page.locator("#words").count() == 0
        assert not any(f">{w}<" in page.content() for w in words)  # the words are off the page
        page.go_back()
        assert shown_words(page) == words
        page.go_forward()
        page.wait_for_selector("#check-form")
        page.click("#back-to-words")
        assert shown_words(page) == words
        page.click("#to-check")
        page.wait_for_selector("#check-form")

        fields = page.locator("#check-form input[name^=word]").all()
        numbers = [int(f.get_attribute("name")[4:]) for f in fields]
        for n in numbers:
            page.fill(f"#word{n}", words[n - 1])
        wrong = numbers[1]
        page.fill(f"#word{wrong}", "zzz")
        page.fill("#passphrase", PASS)
        page.fill("#passphrase2", PASS)
        page.click("#confirm")
        page.wait_for_selector("#form-message:not([hidden])")
        assert f"word {wrong} does not match" in page.inner_text("#form-message").lower()
        assert page.input_value(f"#word{wrong}") == ""  # only the wrong field is emptied
        assert [page.input_value(f"#word{n}") for n in numbers if n != wrong] == [
            words[n - 1] for n in numbers if n != wrong
        ]
        assert page.input_value("#passphrase") == PASS == page.input_value("#passphrase2")
        assert PASS not in page.content()  # kept by the browser's fields, never rendered back
        page.screenshot(path=str(SHOTS / "check.png"), full_page=True)

        page.fill(f"#word{wrong}", words[wrong - 1])
        page.fill("#passphrase2", PASS + "!")  # a slip in the repeated passphrase: both asked again
        page.click("#confirm")
        page.wait_for_selector("#form-message:has-text('passphrases differ')")
        assert page.input_value("#passphrase") == "" and page.input_value(f"#word{wrong}") == words[wrong - 1]

        page.fill("#passphrase", PASS)
        page.fill("#passphrase2", PASS)
        page.click("#confirm")
        page.wait_for_selector("#address")
        assert page.url == url + "/home"
        assert json.loads(keystore.read_text())["public"]["doge_address"] == page.inner_text("#address")
        page.go_back()  # history holds only GETs: Back shows a page, the creation is over
        page.wait_for_selector("main")
        page.go_forward()
        page.wait_for_selector("#address")


def test_restore_typo_kept_and_marked_replace_from_unlock_and_damaged_keystore(page: Any, tmp_path: Path) -> None:
    (tmp_path / "stick").mkdir()
    keystore = tmp_path / "stick" / "keystore.json"
    SHOTS.mkdir(parents=True, exist_ok=True)
    restored = derive_public(" ".join(WORDS)).doge_address
    with conduit_process(keystore, [], tmp_path / "conduit.log") as link:
        url = link.split("/#k=")[0]
        page.goto(link)
        page.click("#create")  # a first wallet, to be replaced from the unlock page
        words = shown_words(page)
        page.click("#to-check")
        page.wait_for_selector("#check-form")
        for f in page.locator("#check-form input[name^=word]").all():
            f.fill(words[int(f.get_attribute("name")[4:]) - 1])
        page.fill("#passphrase", PASS)
        page.fill("#passphrase2", PASS)
        page.click("#confirm")
        page.wait_for_selector("#address")
        first = page.inner_text("#address")
        page.click("#lock")

        page.wait_for_selector("#unlock")
        page.click("#to-restore")
        page.wait_for_selector("#replace-warning")
        assert first in page.inner_text("#replace-warning")
        typed = " ".join(WORDS[:6] + ["abandn"] + WORDS[7:])
        page.fill("#words-input", typed)
        page.fill("#passphrase", PASS)
        page.fill("#passphrase2", PASS)
        page.check("#replace")
        page.click("#do-restore")
        page.wait_for_selector("#form-message:not([hidden])")
        assert "word 7" in page.inner_text("#form-message").lower()
        assert "abandon" in page.inner_text("#form-message")
        assert page.input_value("#words-input") == typed  # the words are kept
        start = typed.index("abandn")
        selected = page.evaluate(
            "[document.activeElement.id, document.activeElement.selectionStart, document.activeElement.selectionEnd]"
        )
        assert selected == ["words-input", start, start + len("abandn")]  # the bad word is marked
        assert page.input_value("#passphrase") == PASS
        page.screenshot(path=str(SHOTS / "restore.png"), full_page=True)
        page.click("button.fix:has-text('abandon')")
        assert page.input_value("#words-input") == " ".join(WORDS)
        page.click("#do-restore")
        page.wait_for_selector("#address")
        assert page.inner_text("#address") == restored != first
        page.click("#lock")
        page.wait_for_selector("#unlock")

        keystore.write_text(keystore.read_text()[:200])  # a torn copy
        page.goto(url + "/unlock")
        page.wait_for_selector("#damaged")
        assert page.locator("#passphrase").count() == 0  # nothing is asked of a keystore that cannot open
        assert "not valid JSON" in page.inner_text("#problem")
        page.screenshot(path=str(SHOTS / "damaged.png"))
        page.click("#to-restore")
        page.wait_for_selector("#replace-warning:has-text('damaged')")
        page.fill("#words-input", " ".join(WORDS))
        page.fill("#passphrase", PASS)
        page.fill("#passphrase2", PASS)
        page.check("#replace")
        page.click("#do-restore")
        page.wait_for_selector("#address")
        assert page.inner_text("#address") == restored
        assert json.loads(keystore.read_text())["public"]["doge_address"] == restored
