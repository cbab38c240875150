"""The card of a price paid ahead on three pages (cells/peerpays/creditweb.py, credit_card.html):
each page names its routes and its words, and the cell's usage reply is shaped for the page with
only checked fields (a hostile reply's other members never reach it)."""

from __future__ import annotations

import pytest

from borgusb.cells.agents.web import SELLER as THINKING
from borgusb.cells.fstream.web import SELLER as STREAMING
from borgusb.cells.peerpays.creditweb import usage_view
from borgusb.cells.shard.web import SELLER as STORING
from borgusb.ledger.credit import credit_ref
from borgusb.ledger.rules import GIB, MIB
from borgusb.ledger.sim import fixed_key
from tests.unit.test_conduit_routes import conduit, page, restore

__all__ = ["conduit"]  # the fixture, used by name

NODE = fixed_key("a selling node").public_key_hex


@pytest.mark.parametrize(
    ("path", "api", "cell"),
    [
        ("/agents", "/api/agents", "agent cell"),
        ("/watch", "/api/watch", "fStream cell"),
        ("/storage", "/api/storage/pay", "shard cell"),
    ],
)
async def test_each_page_carries_the_card_with_its_routes_and_words(conduit, path: str, api: str, cell: str) -> None:
    await restore(conduit)
    html = await page(conduit, path)
    assert f'id="credit-card" data-script="/static/cells/credit.js" data-api="{api}"' in html
    assert f'data-cell="{cell}"' in html and 'id="credit-amount"' in html and html.count('id="credit-card"') == 1


def test_a_usage_reply_is_shaped_with_checked_fields_only() -> None:
    reply = {
        "free": 1_800_000,
        "free_left": 90_500,
        "paid": 200_000_000,
        "charged": 5,
        "balance": 199_999_995,
        "payee": NODE,
        "ref": credit_ref("compute"),
        "exempt": False,
        "html": "<b>x</b>",
    }
    shown = usage_view(THINKING, reply, "10.0.0.2")
    assert shown["left"] == "1 min 30 s of 30 min free thinking left today" and shown["balance"] == "1.99999995"
    assert (shown["free"], shown["free_left"], shown["payee"], shown["served_by"]) == (
        1_800_000,
        90_500,
        NODE,
        "10.0.0.2",
    )
    assert "html" not in shown
    assert usage_view(STREAMING, reply, "x")["ref"] == ""  # another price's ref is not this card's
    assert usage_view(THINKING, dict(reply, payee="<script>"), "x")["payee"] == ""
    stream = usage_view(STREAMING, {"free": 4 * GIB, "free_left": GIB, "ref": credit_ref("stream")}, "x")
    assert stream["left"] == "1.00 GiB of 4.00 GiB free streaming left today" and stream["ref"]
    store = usage_view(STORING, {"held": 3 * MIB, "free_bytes": 2 * MIB, "free": 1, "free_left": 1}, "x")
    assert store["left"] == "3.0 MiB of yours held here, 2.0 MiB of it kept free"
    assert (store["free"], store["free_left"]) == (2 * MIB, 0)  # the meter: the share, and what is left of it
