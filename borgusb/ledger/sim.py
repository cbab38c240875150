"""An in-memory ledger network: every holder of one member view, joined by direct calls.

What `tree/sim.py` is to the PeerTree: the real `Holder` code with the
network taken out, for property tests (any order of deliveries, lost
messages, conflicting spends) and for the benchmark's floor. A test decides
who gets what and when; this class only carries it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from ..keys import SigningKey
from .balance import Balance, Disagreement, read_balance
from .certificate import Acceptance, Certificate, HolderSets, certify, check_certificate
from .errors import LedgerError
from .holder import Holder, WorkCheck
from .htlc import (
    HTLC_GRACE_MS,
    Resolution,
    ResolutionCertificate,
    Vote,
    certify_resolution,
    check_resolution_certificate,
)
from .tx import Tx


def fixed_key(label: str) -> SigningKey:
    """The key whose secret is sha256(label): for tests and vectors only, never for money."""
    return SigningKey(hashlib.sha256(label.encode()).digest())


def _any_work(tx: Tx) -> bool:
    return True


class Network:
    """Holders keyed by node key; `certs` keeps every certificate that was formed, by tx id."""

    def __init__(
        self,
        keys: Sequence[SigningKey],
        r: int = 5,
        faulty: int = 0,
        verify_work: WorkCheck = _any_work,
        htlc_grace_ms: int = HTLC_GRACE_MS,
    ) -> None:
        self.sets = HolderSets([k.public_key_hex for k in keys], r, faulty)
        self.holders = {
            k.public_key_hex: Holder(k, self.sets, verify_work=verify_work, htlc_grace_ms=htlc_grace_ms) for k in keys
        }
        self.certs: dict[str, Certificate] = {}
        self.resolutions: dict[str, ResolutionCertificate] = {}  # by lock id

    def offer(self, tx: Tx, holder: str, now_ms: int) -> Acceptance | LedgerError:
        """One holder's answer to `tx`: its acceptance or its refusal."""
        try:
            return self.holders[holder].accept(tx, now_ms)
        except LedgerError as exc:
            return exc

    def submit(self, tx: Tx, now_ms: int, to: Iterable[str] | None = None) -> tuple[list[Acceptance], dict[str, str]]:
        """Offer `tx` to `to` (default: the payer's holder set); acceptances and refusal reasons by holder."""
        accepted: list[Acceptance] = []
        refused: dict[str, str] = {}
        for h in self.sets.of(tx.account) if to is None else to:
            got = self.offer(tx, h, now_ms)
            if isinstance(got, LedgerError):
                refused[h] = got.reason
            else:
                accepted.append(got)
        return accepted, refused

    def certify(self, tx: Tx, acceptances: Iterable[Acceptance]) -> Certificate | None:
        """The certificate of `tx` if these acceptances make a quorum (recorded in `certs`), else None."""
        cert = certify(tx, acceptances, self.sets.digest(tx.account))
        try:
            check_certificate(cert, self.sets.of(tx.account), self.sets.quorum(tx.account))
        except LedgerError:
            return None
        self.certs[tx.id] = cert
        return cert

    def deliver(self, cert: Certificate, to: Iterable[str] | None = None) -> dict[str, str]:
        """Give `cert` to `to` (default: every holder of the payer or the payee, of a lock the payer's only);
        refusal reasons by holder."""
        tx = cert.tx
        payee = () if tx.kind == "htlc-lock" else self.sets.of(tx.to)  # a lock credits nobody
        targets = set(self.sets.of(tx.account)) | set(payee) if to is None else set(to)
        refused: dict[str, str] = {}
        for h in sorted(targets):
            try:
                self.holders[h].on_certificate(cert)
            except LedgerError as exc:
                refused[h] = exc.reason
        return refused

    def read(self, account: str, holders: Iterable[str] | None = None) -> Balance | Disagreement:
        """A balance read asking `holders` (default: the account's whole holder set)."""
        asked = self.sets.of(account) if holders is None else holders
        answers = [self.holders[h].answer(account) for h in asked]
        return read_balance(account, answers, self.sets.of(account), self.sets.quorum(account))

    # ------------------------------------------------------------ hash-time locks

    def resolve(
        self, res: Resolution, now_ms: int, to: Iterable[str] | None = None, proof: Iterable[Vote] = ()
    ) -> tuple[list[Vote], dict[str, str]]:
        """Offer a claim or refund to `to` (default: the lock payer's holder set); votes and refusal reasons."""
        votes: list[Vote] = []
        refused: dict[str, str] = {}
        for h in self.sets.of(res.lock.account) if to is None else to:
            try:
                votes.append(self.holders[h].resolve(res, now_ms, list(proof)))
            except LedgerError as exc:
                refused[h] = exc.reason
        return votes, refused

    def certify_resolution(self, res: Resolution, votes: Iterable[Vote]) -> ResolutionCertificate | None:
        """The certificate of `res` if these votes make a quorum (recorded in `resolutions`), else None."""
        account = res.lock.account
        cert = certify_resolution(res, votes, self.sets.digest(account))
        try:
            check_resolution_certificate(cert, self.sets.of(account), self.sets.quorum(account))
        except LedgerError:
            return None
        self.resolutions[res.lock.id] = cert
        return cert

    def settle(self, cert: ResolutionCertificate, to: Iterable[str] | None = None) -> dict[str, str]:
        """Give `cert` to `to` (default: the lock payer's and the beneficiary's holders); refusals by holder."""
        res = cert.resolution
        targets = set(self.sets.of(res.lock.account)) | set(self.sets.of(res.beneficiary)) if to is None else set(to)
        refused: dict[str, str] = {}
        for h in sorted(targets):
            try:
                self.holders[h].settle(cert)
            except LedgerError as exc:
                refused[h] = exc.reason
        return refused
