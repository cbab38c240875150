"""The Wallet page without a network: the review/confirm book, and the conduit's routes refusing clearly.

The page against a real peerPaysCell cluster in Chromium is tests/integration/test_wallet_browser.py.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from borgusb.cells.peerpays.wallet import MAX_REVIEWS, REVIEW_TTL_S, WalletBook, WalletRefusal
from borgusb.conduit import ConduitState, create_app
from borgusb.conduit.web import SECRET_HEADER
from borgusb.keys import SigningKey
from borgusb.keystore import KdfParams
from borgusb.ledger import address

WORDS = (
    "legal winner thank year wave sausage worth useful legal winner thank year "
    "wave sausage worth useful legal winner thank year wave sausage worth title"
)
FAST = KdfParams(iterations=1, lanes=1, memory_kib=1024)
PAYER, PAYEE = SigningKey.generate().public_key_hex, SigningKey.generate().public_key_hex


def refused(fn, *args) -> str:
    with pytest.raises(WalletRefusal) as err:
        fn(*args)
    return err.value.reason


def test_review_parses_exactly_and_confirms_once() -> None:
    book = WalletBook()
    r = book.review(PAYER, PAYEE.upper(), " 12.00000001 ", 0.0)
    assert (r.to, r.amount) == (PAYEE, 1_200_000_001)
    assert r.to_dict()["shells"] == "12.00000001" and r.to_dict()["to_address"] == address(PAYEE)
    assert refused(book.confirm, SigningKey.generate().public_key_hex, r.token, 1.0) == "expired"  # another wallet
    assert book.confirm(PAYER, r.token, 1.0) == r
    assert refused(book.confirm, PAYER, r.token, 1.0) == "expired"  # once


def test_review_refusals_carry_their_reason() -> None:
    book = WalletBook()
    assert refused(book.review, PAYER, PAYEE, "1.123456789", 0.0) == "bad_amount"
    assert refused(book.review, PAYER, PAYEE, "0", 0.0) == "bad_amount"
    assert refused(book.review, PAYER, PAYEE, "-3", 0.0) == "bad_amount"
    assert refused(book.review, PAYER, PAYEE, "1e3", 0.0) == "bad_amount"
    assert refused(book.review, PAYER, PAYER, "1", 0.0) == "self_payment"
    assert refused(book.review, PAYER, "bob", "1", 0.0) == "unknown_account"
    unseen = address(SigningKey.generate().public_key_hex)
    assert refused(book.review, PAYER, unseen, "1", 0.0) == "unknown_account"


def test_an_address_is_taken_only_once_its_key_was_seen() -> None:
    book = WalletBook()
    addr = address(PAYEE)
    assert refused(book.review, PAYER, addr, "1", 0.0) == "unknown_account"
    book.learn(PAYEE)  # a peer of the wallet's history
    assert book.review(PAYER, addr, "1", 0.0).to == PAYEE


def test_reviews_expire_and_stay_bounded() -> None:
    book = WalletBook()
    old = book.review(PAYER, PAYEE, "1", 0.0)
    assert refused(book.confirm, PAYER, old.token, REVIEW_TTL_S + 1) == "expired"
    tokens = [book.review(PAYER, PAYEE, "1", 10.0).token for _ in range(MAX_REVIEWS + 3)]
    assert len(book.reviews) == MAX_REVIEWS and refused(book.confirm, PAYER, tokens[0], 11.0) == "expired"
    assert book.confirm(PAYER, tokens[-1], 11.0).amount == 100_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def conduit(tmp_path: Path):
    port = free_port()
    state = ConduitState(tmp_path / "stick" / "keystore.json", kdf=FAST)
    state.keystore_path.parent.mkdir()
    app = create_app(state, seeds=["127.0.0.250"], port=port)  # no node there
    client = TestClient(TestServer(app, port=port))
    await client.start_server()
    auth = {SECRET_HEADER: state.secret}
    resp = await client.post(
        "/restore", data={"words": WORDS, "passphrase": "long enough", "passphrase2": "long enough"}, headers=auth
    )
    assert resp.status == 200
    client.auth = auth  # type: ignore[attr-defined]
    yield client
    await client.close()


async def api(client: TestClient, path: str, doc: object) -> tuple[int, dict]:
    resp = await client.post(path, data=json.dumps(doc), headers=client.auth)  # type: ignore[attr-defined]
    return resp.status, await resp.json()


async def test_the_page_its_script_and_clear_refusals(conduit) -> None:
    html = await (await conduit.get("/wallet", headers=conduit.auth)).text()
    assert 'href="/wallet"' in html and 'data-script="/static/cells/wallet.js"' in html and "send-form" in html
    js = await conduit.get("/static/cells/wallet.js")  # code, the same for everyone: no secret needed
    assert js.status == 200 and js.content_type == "text/javascript" and "onPage" in await js.text()

    status, doc = await api(conduit, "/api/wallet/review", {"to": PAYEE, "amount": "0.000000001"})
    assert status == 400 and doc["reason"] == "bad_amount" and "fractional" in doc["error"]
    status, doc = await api(conduit, "/api/wallet/review", {"to": address(PAYEE), "amount": "1"})
    assert status == 503 and doc["reason"] == "no_node"  # an unseen address is asked of the network: none here
    bad_checksum = address(PAYEE)[:-1] + ("2" if address(PAYEE)[-1] != "2" else "3")
    status, doc = await api(conduit, "/api/wallet/review", {"to": bad_checksum, "amount": "1"})
    assert status == 400 and doc["reason"] == "unknown_account" and "public key" in doc["error"]
    status, doc = await api(conduit, "/api/wallet/review", ["not", "an", "object"])
    assert status == 400 and doc["reason"] == "malformed"
    status, doc = await api(conduit, "/api/wallet/send", {"token": "never issued"})
    assert status == 400 and doc["reason"] == "expired"

    status, doc = await api(conduit, "/api/wallet/review", {"to": PAYEE, "amount": "2.5"})
    assert status == 200 and doc["amount"] == 250_000_000 and doc["shells"] == "2.5"
    status, doc = await api(conduit, "/api/wallet/send", {"token": doc["token"]})
    assert status == 503 and doc["reason"] == "no_node"  # no peerPaysCell here: nothing signed or sent
    status, doc = await api(conduit, "/api/wallet/balance", {})
    assert status == 503 and doc["reason"] == "no_node" and "balance" not in doc

    locked = await conduit.post("/lock", headers=conduit.auth)
    assert locked.status == 200
    status, doc = await api(conduit, "/api/wallet/balance", {})
    assert status == 403
