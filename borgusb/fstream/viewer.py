"""Who pays for a range: the viewer's signed header on a plain-HTTP request to an fStream cell; no I/O.

fStream serves ranges over plain HTTP (a ``<video>`` element cannot sign), so the viewer's conduit,
which relays them, adds `HEADER`: an envelope of type `TYPE`, signed by the viewer's key, addressed
to that one fStream cell (its node key at its monPort) and naming the object and the ``Range`` header
asked for. The cell checks it through its `envelope.Verifier` (signature, freshness, replay) like
any message, so a header works once, at one cell, for one request: one seen on the wire cannot make
anyone else's bytes charged to its signer.
"""

from __future__ import annotations

from .. import envelope
from ..clock import Clock
from ..keys import SigningKey

HEADER = "X-Borg-Viewer"
TYPE = "fstream.view"
MAX_BYTES = 2048


class BadViewer(Exception):
    """A viewer header that proves nothing; `reason` is the refusal's word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def sign_viewer(key: SigningKey, clock: Clock, node: str, port: int, oid: str, range_header: str) -> str:
    """The header's value for one request of `oid` with that ``Range`` ("" for none) at `node`:`port`."""
    body = envelope.sign(key, TYPE, {"oid": oid, "range": range_header}, clock, to=envelope.address(node, port))
    return envelope.encode(body).decode()


def check_viewer(verifier: envelope.Verifier, value: str, oid: str, range_header: str) -> str:
    """The key that signed `value` for this request (object `oid`, that ``Range``), else BadViewer."""
    if len(value) > MAX_BYTES:
        raise BadViewer("viewer_too_large", f"{HEADER} is one small envelope")
    try:
        env = verifier.verify(value.encode("utf-8", "surrogateescape"), expected_type=TYPE)
    except envelope.EnvelopeError as exc:
        raise BadViewer(f"viewer_{exc.reason}", f"{HEADER}: {exc}") from None
    p = env.payload if isinstance(env.payload, dict) else {}
    if p.get("oid") != oid or p.get("range") != range_header:
        raise BadViewer("viewer_mismatch", f"{HEADER} was signed for another request")
    return env.signer
