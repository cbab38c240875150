"""What the conduit holds in memory: the keystore path, the unlocked wallet, the lock.

Keys never leave this object: pages get public data only. The 24 words of a
new wallet are shown once, during creation, and the pending wallet is
dropped (zeroed) as soon as it is saved or abandoned. The door's secret
(`secret`) is made here, random for each start, and kept only in memory: the
launcher's link hands it to the person's browser, and every request must
carry it (see `borgusb.conduit.app.guard`).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import keystore
from ..identity import Wallet


@dataclass
class PendingWallet:
    wallet: Wallet
    confirm_positions: list[int]  # 1-based word numbers the person must type back
    created: float = field(default_factory=time.monotonic)


class ConduitState:
    def __init__(
        self, keystore_path: Path, idle_lock_s: float = 600.0, kdf: keystore.KdfParams = keystore.DEFAULT_KDF
    ) -> None:
        self.keystore_path = Path(keystore_path)
        self.idle_lock_s = idle_lock_s
        self.kdf = kdf
        self.secret = secrets.token_urlsafe(32)  # per start, memory only: the launcher's link gives it to the browser
        self.wallet: Wallet | None = None
        self.pending: PendingWallet | None = None
        self.last_activity = time.monotonic()
        self.file_names: dict[str, str] = {}  # object id -> the name the person gave (this session)

    # ------------------------------------------------------------ queries

    @property
    def has_keystore(self) -> bool:
        return self.keystore_path.exists()

    @property
    def unlocked(self) -> bool:
        return self.wallet is not None

    def is_secret(self, given: str | None) -> bool:
        """Whether `given` is this conduit's secret (compared in constant time)."""
        return given is not None and hmac.compare_digest(given.encode(errors="replace"), self.secret.encode())

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def idle_expired(self) -> bool:
        return self.unlocked and time.monotonic() - self.last_activity > self.idle_lock_s

    # ------------------------------------------------------------ transitions

    def start_creation(self) -> PendingWallet:
        self.drop_pending()
        positions = sorted(secrets.SystemRandom().sample(range(1, 25), 3))
        self.pending = PendingWallet(Wallet.create(), positions)
        return self.pending

    def drop_pending(self) -> None:
        if self.pending is not None:
            self.pending.wallet.close()
            self.pending = None

    def finish_creation(self, answers: dict[int, str], passphrase: str) -> Wallet:
        pending = self.pending
        if pending is None:
            raise ValueError("there is no wallet being created: start again")
        words = pending.wallet.mnemonic().split()
        wrong = [n for n in pending.confirm_positions if answers.get(n, "").strip().lower() != words[n - 1]]
        if wrong:
            raise ValueError(f"word {wrong[0]} does not match what was shown; check your sheet")
        self.pending = None  # from here on owned by self.wallet (lock() must not close it)
        try:
            self._save_and_unlock(pending.wallet, passphrase)
        except BaseException:
            self.pending = pending  # nothing was saved: the person may try again
            raise
        return pending.wallet

    def restore(self, words: str, passphrase: str, bip39_passphrase: str = "") -> Wallet:
        wallet = Wallet.from_mnemonic(words, bip39_passphrase)
        try:
            self._save_and_unlock(wallet, passphrase)
        except BaseException:
            wallet.close()
            raise
        return wallet

    def _save_and_unlock(self, wallet: Wallet, passphrase: str) -> None:
        if self.has_keystore:
            raise ValueError("a keystore already exists on this stick; unlock it instead")
        if len(passphrase) < 8:
            raise ValueError("choose a passphrase of at least 8 characters")
        keystore.save_wallet(self.keystore_path, wallet, passphrase, self.kdf)
        self.lock()
        self.wallet = wallet
        self.touch()

    def unlock(self, passphrase: str) -> Wallet:
        wallet = keystore.load_wallet(self.keystore_path, passphrase)
        self.lock()
        self.wallet = wallet
        self.touch()
        return wallet

    def lock(self) -> None:
        if self.wallet is not None:
            self.wallet.close()
            self.wallet = None
        self.drop_pending()

    def public_keystore(self) -> dict[str, str] | None:
        try:
            return keystore.peek_public(self.keystore_path)
        except keystore.KeystoreError:
            return None
