"""The work record of an ``agent`` reward: an agent's claim of useful work, vouched by the node that
runs it and confirmed by other nodes that saw the same thing (docs/ledger.md, "The agent reward").

A reserve holder cannot redo an agent's work (say, noticing that a cell died), so the rule pays for
work that *independent witnesses* signed they observed:

* **The claim**, signed by the agent's key: a kind (`KINDS`), a ``subject`` that names what was
  observed exactly (``cell_gone|peerMemoryCell|<node key>``), free evidence text and a time.
* **The host's voucher**, signed by the node key of the machine that runs the agent: "this agent is
  mine and made this claim". The reserve holder checks that node is a member of the agents' tree
  (admitted at the tree's bounded rate), so a person cannot mint claimants without nodes.
* **Confirmations**, each signed by the node key of another member of the agents' tree whose own
  System Monitor observed the same subject: at least `MIN_CONFIRMATIONS`, from distinct nodes,
  none of them the host.
* **One payment per observation**: ``ref = sha256(domain | subject | hour of the claim)``,
  independent of who claimed it and which witnesses signed, so the core's ``already_paid`` rule
  pays one claim of a subject per hour however many monitors saw it (two monitors whose claims fall
  either side of an hour's end are both paid: a bounded double).
* **Arithmetic**: ``amount = rules.amount("agent", 1)`` exactly.

Pure: no I/O, time passed in. Membership and the per-host daily cap are the cell's
(`borgusb.cells.peerpays.taskcheck`), since they need the network's member view.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from ..keys import SigningKey
from ..signed import SignedDocError, check_doc, doc_id, sign_doc
from .rules import HOUR_MS, amount
from .tx import Tx
from .work import BadWork, check_pays

VERSION = 1
DOMAIN = "borgusb.ledger.task"
CLAIM_DOMAIN = "borgusb.agent.claim"
HOST_DOMAIN = "borgusb.agent.host"
CONFIRM_DOMAIN = "borgusb.agent.confirm"
KINDS = ("anomaly_report",)
MIN_CONFIRMATIONS = 1
MAX_CONFIRMATIONS = 8
MAX_EVIDENCE = 2000
MAX_SUBJECT = 200
MAX_CLAIM_AGE_MS = 6 * HOUR_MS  # a claim older than this is no longer paid
MAX_SKEW_MS = 5 * 60_000  # a claim or confirmation dated this far after a holder's time is refused
SUBJECT = re.compile(r"[a-z_]{1,32}\|[A-Za-z]{1,32}\|[0-9a-f]{66}")

_FIELDS = {"v", "d", "rule", "claim", "host", "confirms", "amount"}
_CLAIM_FIELDS = {"agent", "kind", "subject", "evidence", "ts"}
_HOST_FIELDS = {"agent", "node", "claim"}
_CONFIRM_FIELDS = {"claim", "node", "ts"}

# reason words of a refused agent claim (each counted by the cell as pay_work_refused:<word>)
TASK_REASONS = (
    "bad_work",  # not a well-formed record, or a signature in it does not check out
    "work_ref_mismatch",  # the reward's ref is not the record's (its subject and hour)
    "wrong_claimant",  # the reward pays someone other than the claiming agent
    "wrong_amount",  # the amount is not the agent rule's
    "self_confirmed",  # the host (or one node twice) confirmed its own claim
    "too_few_confirmations",  # fewer than MIN_CONFIRMATIONS distinct witnesses
    "too_old",  # the claim is older than MAX_CLAIM_AGE_MS
    "future",  # the claim or a confirmation is dated after this holder's time
    "not_member",  # the host or a witness is not a member of the agents' tree
    "task_limit",  # the host's claims of this day reached the cap
)


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A checked ``agent`` record: `agent` (run by `host`) claims `subject`; `witnesses` confirmed it."""

    agent: str
    host: str
    kind: str
    subject: str
    ts: int
    claim_id: str
    witnesses: tuple[str, ...]
    amount: int
    doc: dict[str, Any]

    @property
    def ref(self) -> str:
        """The reward's ``ref``: one per subject and hour, whoever claimed or confirmed it."""
        return task_ref(self.subject, self.ts)


def task_ref(subject: str, ts: int) -> str:
    return hashlib.sha256(f"{DOMAIN}|{subject}|{ts // HOUR_MS}".encode()).hexdigest()


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def sign_claim(key: SigningKey, kind: str, subject: str, evidence: str, ts: int) -> dict[str, Any]:
    """An agent's claim of useful work (`check_claim` is what every reader does with it)."""
    body = {"agent": key.public_key_hex, "kind": kind, "subject": subject, "evidence": evidence[:MAX_EVIDENCE]}
    return check_claim(sign_doc(key, {**body, "ts": ts}, CLAIM_DOMAIN))


def check_claim(doc: Any) -> dict[str, Any]:
    """A claim with its fields and its agent's signature checked (`SignedDocError` if not)."""
    d = check_doc(doc, _CLAIM_FIELDS, "agent", CLAIM_DOMAIN)
    if d["kind"] not in KINDS or not isinstance(d["subject"], str) or not SUBJECT.fullmatch(d["subject"]):
        raise SignedDocError("malformed", f"kind is one of {KINDS} and subject is kind|cell|node key")
    if not isinstance(d["evidence"], str) or len(d["evidence"]) > MAX_EVIDENCE or not _int(d["ts"]):
        raise SignedDocError("malformed", f"evidence is text of at most {MAX_EVIDENCE} characters, ts a time")
    return d


def claim_id(claim: dict[str, Any]) -> str:
    return doc_id(claim, CLAIM_DOMAIN)


def sign_host(node: SigningKey, claim: dict[str, Any]) -> dict[str, Any]:
    """The host node's voucher: the claiming agent runs on this node."""
    return sign_doc(node, {"agent": claim["agent"], "node": node.public_key_hex, "claim": claim_id(claim)}, HOST_DOMAIN)


def sign_confirm(node: SigningKey, claim: dict[str, Any], ts: int) -> dict[str, Any]:
    """A witness node's confirmation: its own monitor observed the claim's subject."""
    return sign_doc(node, {"claim": claim_id(claim), "node": node.public_key_hex, "ts": ts}, CONFIRM_DOMAIN)


def make_task(claim: dict[str, Any], host: dict[str, Any], confirms: list[dict[str, Any]]) -> TaskRecord:
    """The record a claimant hands the reserve (`BadWork` if it would not pass `check_task`)."""
    doc = {
        "v": VERSION,
        "d": DOMAIN,
        "rule": "agent",
        "claim": claim,
        "host": host,
        "confirms": sorted(confirms, key=lambda c: str(c.get("node")))[:MAX_CONFIRMATIONS],
        "amount": amount("agent", 1),
    }
    return check_task(doc)


def check_task(doc: Any) -> TaskRecord:
    """A `TaskRecord` from its wire form: every signature, the witnesses' independence, the amount."""
    if not isinstance(doc, dict) or set(doc) != _FIELDS:
        raise BadWork("bad_work", f"an agent record has exactly the fields {sorted(_FIELDS)}")
    if doc["v"] != VERSION or doc["d"] != DOMAIN or doc["rule"] != "agent":
        raise BadWork("bad_work", "not a version-1 agent record")
    try:
        claim = check_claim(doc["claim"])
        cid = claim_id(claim)
        host = check_doc(doc["host"], _HOST_FIELDS, "node", HOST_DOMAIN)
        confirms = doc["confirms"]
        if not isinstance(confirms, list) or len(confirms) > MAX_CONFIRMATIONS:
            raise BadWork("bad_work", f"at most {MAX_CONFIRMATIONS} confirmations")
        witnesses = [check_doc(c, _CONFIRM_FIELDS, "node", CONFIRM_DOMAIN) for c in confirms]
    except SignedDocError as exc:
        raise BadWork("bad_work", f"{exc.reason}: {exc}") from None
    if host["agent"] != claim["agent"] or host["claim"] != cid:
        raise BadWork("bad_work", "the host's voucher is for another agent or claim")
    nodes = [w["node"] for w in witnesses]
    if any(w["claim"] != cid or not _int(w["ts"]) for w in witnesses):
        raise BadWork("bad_work", "a confirmation is for another claim")
    if host["node"] in nodes or len(set(nodes)) != len(nodes):
        raise BadWork("self_confirmed", "witnesses are distinct nodes other than the host")
    if len(nodes) < MIN_CONFIRMATIONS:
        raise BadWork("too_few_confirmations", f"at least {MIN_CONFIRMATIONS} other node must confirm")
    owed = amount("agent", 1)
    if doc["amount"] != owed:
        raise BadWork("wrong_amount", f"the agent rule pays {owed} units per task, not {doc['amount']!r}")
    return TaskRecord(
        claim["agent"], host["node"], claim["kind"], claim["subject"], claim["ts"], cid, tuple(nodes), owed, doc
    )


def check_task_claim(rec: TaskRecord, tx: Tx, now_ms: int) -> None:
    """The reward `tx` is a claim on `rec`, fresh and not from the future (`BadWork` if not)."""
    check_pays(tx, rec.ref, rec.agent, rec.amount)
    if rec.ts > now_ms + MAX_SKEW_MS or any(c["ts"] > now_ms + MAX_SKEW_MS for c in rec.doc["confirms"]):
        raise BadWork("future", "the claim or a confirmation is dated after this holder's time")
    if now_ms - rec.ts > MAX_CLAIM_AGE_MS:
        raise BadWork("too_old", f"the claim is {now_ms - rec.ts} ms old (paid up to {MAX_CLAIM_AGE_MS})")
