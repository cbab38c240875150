"""The Watch page's routes in the conduit (aiohttp's test client, no network): the page, and the
/media/ capability route's refusals (unknown token, a locked wallet's tokens, ranges past the end)."""

from __future__ import annotations

import time

from borgusb.cells.fstream.web import TOKENS, Watch
from tests.unit.test_conduit_routes import auth, conduit, page, post, restore

__all__ = ["conduit"]  # the fixture, used by name


async def test_the_page_and_its_script(conduit) -> None:
    await restore(conduit)
    html = await page(conduit, "/watch")
    assert 'data-script="/static/cells/watch.js"' in html and 'id="watch-player"' in html
    js = await conduit.get("/static/cells/watch.js")
    assert js.status == 200 and ".innerHTML" not in await js.text()  # (named once, in a comment)
    # the Streaming card (a price paid ahead, as the Agents page's Thinking time card)
    assert 'id="credit-card" data-script="/static/cells/credit.js" data-api="/api/watch"' in html
    assert 'data-cell="fStream cell" data-what="streaming"' in html and "0.01 Shell a GiB" in html
    js = await conduit.get("/static/cells/credit.js")
    assert js.status == 200 and ".innerHTML" not in await js.text()


async def test_media_tokens_are_capabilities_of_an_unlocked_wallet(conduit) -> None:
    resp = await conduit.get("/media/" + "x" * 43)  # no secret, as a <video> asks: no shell, a refusal
    assert resp.status == 404 and (await resp.json())["error"] == "unknown_token"
    resp = await conduit.post("/api/watch/open", json={"path": "/a.webm"}, headers=auth(conduit))
    assert resp.status == 403  # locked: nothing opens
    await restore(conduit)
    owner = conduit.state.wallet.public.public_key_hex
    tokens = conduit.server.app[TOKENS]
    tokens["t" * 43] = Watch(owner, "ab" * 32, 1000, None, "video/webm", time.monotonic() + 60)
    tokens["old"] = Watch(owner, "ab" * 32, 1000, None, "video/webm", time.monotonic() - 1)
    resp = await conduit.get("/media/" + "t" * 43, headers={"Range": "bytes=1000-"})
    assert resp.status == 416 and resp.headers["Content-Range"] == "bytes */1000"
    assert resp.headers["Accept-Ranges"] == "bytes" and resp.headers["X-Content-Type-Options"] == "nosniff"
    assert (await conduit.get("/media/old")).status == 404  # expired
    resp = await conduit.get("/watch")  # any other address without the secret is still the shell
    assert resp.status == 200 and 'id="watch"' not in await resp.text()
    await post(conduit, "/lock")
    resp = await conduit.get("/media/" + "t" * 43, headers={"Range": "bytes=0-1"})
    assert resp.status == 403 and (await resp.json())["error"] == "locked" and not tokens
