"""peerPaysCell's answer to a lying holder: find its two votes, keep them, spread them, drop it.

The protocol is `borgusb.ledger.evidence` (docs/ledger.md, "Equivocation
evidence"); this mixin only carries it:

* **Found** where the cell already is: a certificate delivered to it
  (``pay.confirm``, either side) or one it certified as an entry is shown to
  the `VoteWitness`; a second certificate for a (account, seq) this holder
  has certified (refused as ``conflicting_spend``) is compared with the one
  it keeps.
* **Kept**: checked evidence goes to the holder's SQLite (``evidence`` table)
  before the holder is dropped, and is checked again when the cell starts.
* **Spread**: a ``payevidence`` broadcast to every peerPaysCell, and on
  request (``pay.evidence``: the evidence against keys the asker does not
  name). The cell that found a piece, or fetched it, broadcasts it; one that
  heard it by the broadcast does not send it again. An offer names the keys its sender excludes (``excluded``); a holder
  whose view differs asks the offerer for what it lacks before it answers
  ``view_mismatch``, and an entry that hears ``view_mismatch`` asks those
  holders. Nothing is believed on anyone's word: each piece is two holder
  signatures, checked here.
* **Dropped**: the member view is the root's table without the proven keys,
  so every holder set and the view's digest leave them out. Only keys in the
  root's table are taken (at most `MAX_EXCLUDED`): evidence against a key
  nobody has as a member changes no view, and free keys cannot fill the list.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ...ledger.accounts import is_account
from ...ledger.certificate import Certificate
from ...ledger.durable import DurableHolder
from ...ledger.errors import LedgerError
from ...ledger.evidence import Evidence, VoteWitness, acceptances, between_certificates, check_evidence
from ..kit import RequestError, on_broadcast, receptor
from ..kit.holdercell import HolderCell

log = logging.getLogger("borgusb.peerpays")

MAX_EXCLUDED = 256  # proven keys kept; the root's table is far smaller in any network we run
EVIDENCE_PER_REPLY = 16  # pieces per pay.evidence answer (~2 KiB each)
ASK_AT_MOST = 3  # holders asked for evidence after one refused offer


class EquivocationReceptors(HolderCell):
    """Evidence against lying holders: found, kept, spread and acted on (see the module docstring)."""

    if TYPE_CHECKING:
        ledger: DurableHolder

        def use_members(self, members: dict[str, str]) -> None: ...
        async def _bounded(self, holder: str, type: str, payload: dict[str, Any]) -> dict[str, Any] | str: ...

    def _load_evidence(self) -> None:
        """The proven keys the store kept, each piece checked again (a store is not a signature)."""
        self.table: dict[str, str] = dict(self.members)  # the root's table as last read (members: less the proven)
        self.excluded: dict[str, Evidence] = {}
        self.witness = VoteWitness()
        for doc in self.ledger.store.evidence():
            try:
                ev = check_evidence(doc)
            except LedgerError:
                self.counters["pay_evidence_unreadable"] += 1
                continue
            self.excluded[ev.holder] = ev

    # ------------------------------------------------------------ finding

    def _witness(self, cert: Certificate) -> None:
        """Show a checked certificate to the witness; act on any broken promise it shows."""
        for ev in self.witness.observe(acceptances(cert)):
            self._learn(ev, found=True)

    def _second_certificate(self, cert: Certificate) -> None:
        """`cert` (checked) met another certificate at its (account, seq) here: who signed both lied."""
        chain = self.ledger.holder.state.chains.get(cert.tx.account)
        entries = chain.entries if chain is not None else []
        have = entries[cert.tx.seq - 1].cert if 0 < cert.tx.seq <= len(entries) else None
        if have is not None:
            for ev in between_certificates(have, cert):
                self._learn(ev, found=True)

    # ------------------------------------------------------------ keeping and acting

    def _learn(self, ev: Evidence, *, found: bool = False, spread: bool = True) -> bool:
        """Keep checked evidence and drop its holder from the view; True when it was news. `spread`:
        broadcast it (not when it came by the broadcast, which reaches every cell already)."""
        if ev.holder in self.excluded:
            return False
        if ev.holder not in self.table:
            self.counters["pay_evidence_ignored:not_a_member"] += 1
            return False
        if len(self.excluded) >= MAX_EXCLUDED:
            self.counters["pay_evidence_ignored:full"] += 1
            return False
        self.ledger.store.keep_evidence(ev.holder, ev.to_dict())  # durable before it is acted on
        self.excluded[ev.holder] = ev
        self.counters["pay_evidence_found" if found else "pay_evidence_learned"] += 1
        log.warning("peerPaysCell: holder %s signed two transactions for one sequence number; dropped", ev.holder[:16])
        self.use_members(self.table)
        if spread:
            self.broadcast("payevidence", {"evidence": ev.to_dict()})
        return True

    def _learn_doc(self, doc: Any, *, spread: bool = True) -> bool:
        try:
            ev = check_evidence(doc)
        except LedgerError as exc:
            self.counters[f"pay_evidence_refused:{exc.reason}"] += 1
            return False
        return self._learn(ev, spread=spread)

    def without_proven(self, table: dict[str, str]) -> dict[str, str]:
        """The member view: the root's `table` less every key proven to have lied."""
        self.table = dict(table)
        return {k: ip for k, ip in table.items() if k not in self.excluded}

    def excluded_keys(self) -> list[str]:
        return sorted(self.excluded)

    # ------------------------------------------------------------ spreading

    @on_broadcast("payevidence")
    def _b_evidence(self, origin: str, data: dict[str, Any]) -> None:
        self._learn_doc(data.get("evidence"), spread=False)

    @receptor("pay.evidence")
    async def _r_evidence(self, env: Any) -> Any:
        """The evidence this cell keeps against keys the asker does not name in ``have``."""
        have = env.payload.get("have") if isinstance(env.payload, dict) else None
        if not isinstance(have, list) or len(have) > MAX_EXCLUDED or not all(is_account(k) for k in have):
            raise RequestError("malformed", f"have is a list of at most {MAX_EXCLUDED} public keys")
        known = set(have)
        docs = [ev.to_dict() for k, ev in sorted(self.excluded.items()) if k not in known]
        return {"evidence": docs[:EVIDENCE_PER_REPLY], "more": len(docs) > EVIDENCE_PER_REPLY}

    async def fetch_evidence(self, holder: str) -> int:
        """Ask `holder` (a key of the root's table) for evidence this cell lacks; how many pieces were news."""
        if holder not in self.table or holder == self.key.public_key_hex:
            return 0
        reply = await self._bounded(holder, "pay.evidence", {"have": self.excluded_keys()})
        docs = reply.get("evidence") if isinstance(reply, dict) else None
        if not isinstance(docs, list):
            return 0
        return sum(self._learn_doc(doc) for doc in docs[:EVIDENCE_PER_REPLY])

    async def reconcile_exclusions(self, offered: Any, offerer: str) -> None:
        """An offer whose view differs from ours: fetch from its sender the evidence behind keys it
        excludes and we do not (``offered``: the offer's ``excluded`` list, unchecked)."""
        if not isinstance(offered, list) or len(offered) > MAX_EXCLUDED:
            return
        if any(isinstance(k, str) and k in self.table and k not in self.excluded for k in offered):
            await self.fetch_evidence(offerer)

    async def ask_refusers(self, answers: dict[str, Any]) -> None:
        """Holders that refused an offer as ``view_mismatch`` may know evidence we lack: ask a few."""
        refusers = [h for h, a in answers.items() if a == "view_mismatch"][:ASK_AT_MOST]
        for holder in refusers:
            await self.fetch_evidence(holder)

    def evidence_status(self) -> dict[str, Any]:
        return {"excluded": [k[:16] for k in self.excluded_keys()], "witnessed_slots": len(self.witness)}
