"""The conduit's link and how it is opened: the secret never on a command line, the page only the user's."""

from __future__ import annotations

import stat
from pathlib import Path

from borgusb.conduit import launch

SECRET = "s3cr3t-_" * 5


def test_the_link_carries_the_secret_in_the_fragment_only() -> None:
    url = launch.link(8088, SECRET)
    assert url == f"http://127.0.0.1:8088/#k={SECRET}"
    assert SECRET not in url.split("#")[0]  # a fragment never reaches a server, a log or a Referer


def test_the_browser_is_given_a_private_page_not_the_link(tmp_path: Path, monkeypatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(launch.webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    url = launch.link(8099, SECRET)
    page = launch.open_in_browser(url, tmp_path)
    assert page is not None and page.parent == tmp_path
    assert opened == [page.as_uri()] and SECRET not in opened[0]  # what other users see in ps
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    html = page.read_text()
    assert f'<meta http-equiv="refresh" content="0;url={url}">' in html and f'href="{url}"' in html


def test_the_forwarding_page_escapes_the_link() -> None:
    html = launch.forwarding_page('http://127.0.0.1:1/#k="><script>')
    assert "<script>" not in html and "&quot;&gt;&lt;script&gt;" in html


def test_nothing_is_opened_without_a_ram_directory(monkeypatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(launch.webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    monkeypatch.setattr(launch, "ram_directory", lambda: None)
    assert launch.open_in_browser(launch.link(8088, SECRET)) is None and opened == []
