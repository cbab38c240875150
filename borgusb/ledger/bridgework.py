"""The work record of a ``bridge`` reward: a bridge operator's claim that it served one Dogecoin leg
of a swap (docs/ledger.md, "The bridge reward").

A bridge is a node whose dogeNodeCell is connected to a Dogecoin node and carries the exchange's
swaps (docs/exchange.md): the buyer's funding of the P2SH HTLC (a **deposit**) and its claim or
refund (a **withdrawal**). The rule pays 1 Shell for each such confirmed Dogecoin transaction.

* **The voucher**, signed by a party to the swap (the ledger lock's payer or payee; domain
  `VOUCHER_DOMAIN`): "bridge ``bridge`` served my swap: the lock ``lock`` of ``account``, the
  transaction ``txid`` (``op``)". A party's settlement signs one for the dogeNodeCell that broadcast
  its transaction (`borgusb.cells.btrader.settle`), so a bridge cannot claim a swap it did not
  serve, and another bridge cannot take its reward (the voucher names the claimant).
* **The record** carries the voucher, the HTLC's redeem script and the lock, and the rule's amount
  for one operation. ``ref = sha256("borgusb.ledger.bridge|" + txid)``: one ref per Dogecoin
  transaction, so the core's ``already_paid`` pays each transaction once, whoever claims it.
* **Paid within `MAX_CLAIM_AGE_MS` of the voucher** (and not for a voucher from the future).

Pure: no I/O, time passed in. `check_bridge_tx` reads the transaction's bytes; that the lock exists
with that hash and was resolved, that the voucher's signer is its party and that the transaction
has its confirmations are the holder's (`borgusb.cells.peerpays.bridgecheck`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from bitcoin.core import CTransaction, x
from bitcoin.core.script import CScript, CScriptInvalidError

from .. import canonical
from ..doge.htlc import Htlc, HtlcError, parse_htlc
from ..keys import SigningKey
from ..signed import SignedDocError, check_doc, sign_doc
from .accounts import is_account
from .rules import HOUR_MS, amount
from .tx import Tx
from .work import BadWork, CanonicalRecord, check_pays

VERSION = 1
DOMAIN = "borgusb.ledger.bridge"
VOUCHER_DOMAIN = "borgusb.exchange.bridge"
OPS = ("deposit", "withdrawal")
MAX_SCRIPT_BYTES = 128  # the HTLC's redeem script is ~110 bytes
MAX_WORK_BYTES = 4096
MAX_CLAIM_AGE_MS = 6 * HOUR_MS  # a voucher older than this is no longer paid
MAX_SKEW_MS = 5 * 60_000  # a voucher dated this far ahead of the holder's network time is refused
MAX_TX_HEX = 200_000  # dogecoind's standard transactions are at most 100 kB

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_FIELDS = {"v", "d", "rule", "claimant", "op", "txid", "script", "lock", "voucher", "amount"}
_VOUCHER_FIELDS = {"party", "bridge", "account", "lock", "op", "txid", "ts"}

# reason words of a refused bridge claim (each counted by the cell as pay_work_refused:<word>)
BRIDGE_REASONS = (
    "bad_work",  # not a well-formed record, or a script that is not the HTLC's shape
    "bad_voucher",  # the voucher does not check or does not name this record's bridge, lock, op and txid
    "work_ref_mismatch",  # the reward's ref is not the transaction's
    "wrong_claimant",  # the reward pays someone other than the record's claimant
    "wrong_amount",  # the amount is not the bridge rule's for one operation
    "too_old",  # the voucher is older than MAX_CLAIM_AGE_MS
    "future_voucher",  # the voucher is dated ahead of network time
    "already_claimed",  # this holder approved the transaction for another bridge
    "daily_cap",  # this holder approved MAX_OPS_PER_DAY operations of this bridge today
    "claims_full",  # this holder remembers as many bridges today as it may (503: wait)
    "lock_unknown",  # the ledger has no such lock of that account
    "lock_open",  # the lock is neither claimed nor refunded yet
    "not_party",  # the voucher's signer is neither the lock's payer nor its payee
    "hash_mismatch",  # the script's secret hash is not the lock's
    "tx_unknown",  # the holder's Dogecoin node knows no such transaction
    "unconfirmed",  # the transaction has fewer confirmations than the holder's dogeNodeCell requires
    "not_htlc_tx",  # the transaction neither funds (deposit) nor spends (withdrawal) the script's HTLC
    "bridge_unverifiable",  # this holder has no Dogecoin node to ask (503: not counted; try other holders later)
)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= canonical.MAX_SAFE_INT


def _hex64(v: Any) -> bool:
    return isinstance(v, str) and _HEX64.fullmatch(v) is not None


def bridge_ref(txid: str) -> str:
    """The reward's ``ref`` for one Dogecoin transaction: paid once whoever claims it."""
    return hashlib.sha256(f"{DOMAIN}|{txid}".encode()).hexdigest()


def sign_voucher(
    party: SigningKey, bridge: str, account: str, lock: str, op: str, txid: str, ts: int
) -> dict[str, Any]:
    """A swap party's voucher: the bridge `bridge` served its swap's `op` in `txid` (the ledger lock
    `lock` of `account`), at network time `ts`."""
    body = {
        "party": party.public_key_hex,
        "bridge": bridge,
        "account": account,
        "lock": lock,
        "op": op,
        "txid": txid,
        "ts": ts,
    }
    return check_voucher(sign_doc(party, body, VOUCHER_DOMAIN))


def check_voucher(doc: Any) -> dict[str, Any]:
    """A voucher with its fields and its party's signature checked (`SignedDocError` if not)."""
    d = check_doc(doc, _VOUCHER_FIELDS, "party", VOUCHER_DOMAIN)
    if not is_account(d["bridge"]) or not is_account(d["account"]):
        raise SignedDocError("malformed", "bridge and account are public keys")
    if not _hex64(d["lock"]) or not _hex64(d["txid"]) or d["op"] not in OPS or not _int(d["ts"]):
        raise SignedDocError("malformed", f"lock and txid are 64 hex, op one of {OPS}, ts a time in ms")
    return d


def parse_script(script_hex: Any) -> Htlc:
    """The HTLC terms of a redeem script in hex (`BadWork` ``bad_work`` if it is not one)."""
    if not isinstance(script_hex, str) or not 0 < len(script_hex) <= 2 * MAX_SCRIPT_BYTES:
        raise BadWork("bad_work", f"script is the HTLC's redeem script in hex, at most {MAX_SCRIPT_BYTES} bytes")
    if _HEX.fullmatch(script_hex) is None:
        raise BadWork("bad_work", "script is lowercase hex")
    try:
        return parse_htlc(bytes.fromhex(script_hex))
    except HtlcError as exc:
        raise BadWork("bad_work", f"script: {exc}") from None


@dataclass(frozen=True, slots=True)
class BridgeRecord(CanonicalRecord):
    """A checked ``bridge`` record: `claimant` served `op` of a swap in the Dogecoin transaction `txid`."""

    claimant: str
    op: str
    txid: str
    script: str
    account: str
    lock: str
    voucher: dict[str, Any]
    amount: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "d": DOMAIN,
            "rule": "bridge",
            "claimant": self.claimant,
            "op": self.op,
            "txid": self.txid,
            "script": self.script,
            "lock": {"account": self.account, "id": self.lock},
            "voucher": self.voucher,
            "amount": self.amount,
        }

    @property
    def ref(self) -> str:
        """One payment per Dogecoin transaction, whoever claims it (`bridge_ref`)."""
        return bridge_ref(self.txid)

    @property
    def party(self) -> str:
        """The key that vouched for the bridge."""
        return str(self.voucher["party"])

    @property
    def secret_hash(self) -> str:
        return parse_htlc(bytes.fromhex(self.script)).secret_hash.hex()


def make_bridge(claimant: str, voucher: dict[str, Any], script: str) -> BridgeRecord:
    """The record a bridge hands the reserve for a voucher it was given (`BadWork` if it would not check)."""
    v = voucher if isinstance(voucher, dict) else {}
    lock = {"account": v.get("account"), "id": v.get("lock")}
    doc = {
        "v": VERSION,
        "d": DOMAIN,
        "rule": "bridge",
        "claimant": claimant,
        "op": v.get("op"),
        "txid": v.get("txid"),
        "script": script,
        "lock": lock,
        "voucher": voucher,
        "amount": amount("bridge", 1),
    }
    return check_bridge(doc)


def check_bridge(doc: Any) -> BridgeRecord:
    """A `BridgeRecord` from its wire form: fields, the HTLC script, the voucher's signature and that it
    names this record's claimant, lock, op and txid, the rule's amount, the size."""
    if not isinstance(doc, dict) or set(doc) != _FIELDS:
        raise BadWork("bad_work", f"a bridge record has exactly the fields {sorted(_FIELDS)}")
    if doc["v"] != VERSION or doc["d"] != DOMAIN or doc["rule"] != "bridge":
        raise BadWork("bad_work", "not a version-1 bridge record")
    claimant, op, txid, lock = doc["claimant"], doc["op"], doc["txid"], doc["lock"]
    if not is_account(claimant) or op not in OPS or not _hex64(txid):
        raise BadWork("bad_work", f"claimant is a public key, op one of {OPS}, txid 64 hex")
    if not isinstance(lock, dict) or set(lock) != {"account", "id"}:
        raise BadWork("bad_work", "lock is {account, id}")
    if not is_account(lock["account"]) or not _hex64(lock["id"]):
        raise BadWork("bad_work", "the lock's account is a public key and its id 64 hex")
    parse_script(doc["script"])
    try:
        voucher = check_voucher(doc["voucher"])
    except SignedDocError as exc:
        raise BadWork("bad_voucher", f"{exc.reason}: {exc}") from None
    named = (voucher["bridge"], voucher["account"], voucher["lock"], voucher["op"], voucher["txid"])
    if named != (claimant, lock["account"], lock["id"], op, txid):
        raise BadWork("bad_voucher", "the voucher names another bridge, lock, op or transaction")
    owed = amount("bridge", 1)
    if not _int(doc["amount"]) or doc["amount"] != owed:
        raise BadWork("wrong_amount", f"the bridge rule owes {owed} units for one operation")
    rec = BridgeRecord(claimant, op, txid, doc["script"], lock["account"], lock["id"], voucher, owed)
    if len(rec.to_bytes()) > MAX_WORK_BYTES:
        raise BadWork("bad_work", f"a record is at most {MAX_WORK_BYTES} bytes")
    return rec


def check_bridge_claim(rec: BridgeRecord, tx: Tx, now_ms: int) -> None:
    """The reward `tx` pays exactly `rec`, whose voucher is neither from the future nor too old."""
    check_pays(tx, rec.ref, rec.claimant, rec.amount)
    ts = int(rec.voucher["ts"])
    if ts > now_ms + MAX_SKEW_MS:
        raise BadWork("future_voucher", f"the voucher is dated {ts - now_ms} ms ahead")
    if now_ms - ts > MAX_CLAIM_AGE_MS:
        raise BadWork("too_old", f"the voucher is {now_ms - ts} ms old (paid up to {MAX_CLAIM_AGE_MS})")


def check_bridge_tx(rec: BridgeRecord, raw_hex: str) -> None:
    """The Dogecoin transaction's bytes (already hashed to `rec.txid` by the caller) are the record's
    operation: a deposit has an output paying the script's P2SH address, a withdrawal an input whose
    script ends with the redeem script (a claim or a refund of it); else `BadWork` ``not_htlc_tx``."""
    if not isinstance(raw_hex, str) or len(raw_hex) > MAX_TX_HEX:
        raise BadWork("not_htlc_tx", "not a standard transaction")
    try:
        tx = CTransaction.deserialize(x(raw_hex))
    except Exception:  # python-bitcoinlib raises several types for bad bytes
        raise BadWork("not_htlc_tx", "not a transaction") from None
    script = bytes.fromhex(rec.script)
    if rec.op == "deposit":
        p2sh = bytes(CScript(script).to_p2sh_scriptPubKey())
        if not any(bytes(out.scriptPubKey) == p2sh for out in tx.vout):
            raise BadWork("not_htlc_tx", "no output of the transaction pays the HTLC's address")
        return
    for txin in tx.vin:
        try:
            pushes = list(CScript(txin.scriptSig))
        except CScriptInvalidError:
            continue
        if pushes and pushes[-1] == script:
            return
    raise BadWork("not_htlc_tx", "no input of the transaction spends the HTLC")
