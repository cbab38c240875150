"""Offers and certificates to one holder, several to a request (``pay.accepts``, ``pay.confirms``).

Why: a confirmed transfer costs its entry holder an offer to each other holder of the payer and
the certificate's delivery to each holder of the payer and the payee, one signed request each;
under load most of a holder's CPU went to those requests' envelopes, TLS records and HTTP, not
to the votes and commits they carry (bench_ledger). The entry holder's offers to one holder, and
its certificates to one holder, now travel together while another such request to that holder
is in flight (`kit.coalesce`: an idle holder's request still goes at once, alone). A holder takes
each item exactly as it takes ``pay.accept`` or ``pay.confirm`` alone and answers, in order, each
item's result or its refusal's reason. The key's rate counts every item, as if it came alone.
A bundle's decisions share one commit (`DurableHolder.one_commit`): one fsync where each alone
paid its own, which under load was most of a holder's time.

A reward's offer (its work record is checked, which may ask other cells) still travels alone in
``pay.accept``, and so do a catch-up's certificates (`_hand_cert`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ... import envelope
from ...ledger.certificate import Acceptance
from ...ledger.durable import DurableHolder
from ...ledger.tx import Tx
from ...net.peer import PeerError, PeerRejected
from ..kit import RequestError, receptor
from ..kit.coalesce import Busy, Coalescer, ShortReply
from ..kit.holdercell import HolderCell

MAX_BUNDLE = 32  # offers or certificates one request carries
MAX_WAITING = 256  # offers or certificates waiting for one holder; one more is refused "busy"


class BundleReceptors(HolderCell):
    """Mixin of `PeerPaysCell`: ``pay.accepts`` and ``pay.confirms``, and the bundling senders."""

    if TYPE_CHECKING:
        offer_timeout_s: float
        ledger: DurableHolder

        async def ready_offer(self, payload: Any, signer: str) -> tuple[Tx, str, list[Acceptance]]: ...
        def vote_ready(self, tx: Tx, view: str, taken: list[Acceptance]) -> dict[str, Any]: ...
        def take_local(self, doc: Any) -> tuple[str, list[str]]: ...
        async def _ask(self, holder: str, type: str, payload: dict[str, Any]) -> dict[str, Any]: ...

    def _init_bundles(self) -> None:
        self.offers: Coalescer[dict[str, Any], Any] = Coalescer(
            lambda holder, items: self._send_bundle(holder, "pay.accepts", "offers", items),
            self._spawn,
            max_items=MAX_BUNDLE,
            max_queued=MAX_WAITING,
        )
        self.certs: Coalescer[dict[str, Any], Any] = Coalescer(
            lambda holder, items: self._send_bundle(holder, "pay.confirms", "certs", items),
            self._spawn,
            max_items=MAX_BUNDLE,
            max_queued=MAX_WAITING,
        )

    # ------------------------------------------------------------ a holder's side

    def _bundle(self, env: envelope.Envelope, member: str) -> list[Any]:
        items = env.payload.get(member) if isinstance(env.payload, dict) else None
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BUNDLE:
            raise RequestError("malformed", f"{member} is a list of 1 to {MAX_BUNDLE}")
        self.guard.admit_key(env.signer, cost=len(items) - 1)  # the door counted the request as one
        self.counters[f"pay_bundled:{env.type}"] += len(items)
        return items

    @receptor("pay.accepts")
    async def _r_accepts(self, env: envelope.Envelope) -> Any:
        """Several offers, each as ``pay.accept`` takes it: made ready at once (what may wait on other
        nodes), then voted on in order with one commit for all: each its acceptance or refusal."""

        async def ready(offer: Any) -> tuple[Tx, str, list[Acceptance]] | RequestError:
            try:
                return await self.ready_offer(offer, env.signer)
            except RequestError as exc:
                return exc

        results: list[dict[str, Any]] = []
        offers = await asyncio.gather(*(ready(o) for o in self._bundle(env, "offers")))
        with self.ledger.one_commit():  # no await inside: nothing answers before the commit
            for offer in offers:
                if isinstance(offer, RequestError):
                    results.append(offer.to_json())
                    continue
                try:
                    results.append(self.vote_ready(*offer))
                except RequestError as exc:
                    results.append(exc.to_json())
        return {"results": results}

    @receptor("pay.confirms")
    async def _r_confirms(self, env: envelope.Envelope) -> Any:
        """Several certificates (or skips), taken in order as ``pay.confirm`` takes each, with one
        commit for all: each its result or refusal."""
        results: list[dict[str, Any]] = []
        docs = self._bundle(env, "certs")
        with self.ledger.one_commit():  # no await inside: nothing answers before the commit
            for doc in docs:
                try:
                    settled, events = self.take_local(doc)
                except RequestError as exc:
                    results.append(exc.to_json())
                    continue
                self.counters["pay_certificates"] += 1
                results.append({"id": settled, "events": events})
        return {"results": results}

    # ------------------------------------------------------------ the sender's side

    async def _send_bundle(self, holder: str, type: str, member: str, items: list[dict[str, Any]]) -> list[Any]:
        reply = await self._ask(holder, type, {member: items})
        results = reply.get("results")
        if not isinstance(results, list):
            raise ShortReply("the reply has no results")
        return results

    async def bundled(self, bundles: Coalescer[dict[str, Any], Any], holder: str, item: dict[str, Any]) -> Any:
        """The holder's result for one offer or certificate sent in a bundle, or the reason word it was
        not had (its refusal, ``busy``, ``timeout``, ``unreachable``, ``bad_reply``), as `_bounded` answers."""
        try:
            got = await asyncio.wait_for(bundles.call(holder, item), self.offer_timeout_s)
        except Busy:
            self.counters["pay_bundle_busy"] += 1
            return "busy"
        except TimeoutError:
            return "timeout"
        except ShortReply:
            return "bad_reply"
        except PeerRejected as exc:
            return exc.reason
        except PeerError:
            return "unreachable"
        if not isinstance(got, dict):
            return "bad_reply"
        error = got.get("error")
        if error is not None:  # as a refusal alone would say it (`PeerRejected.from_reply`)
            return error[:48] if isinstance(error, str) and error else "unexplained"
        return got
