"""What the conduit holds in memory: the keystore path, the unlocked wallet, the lock.

Keys never leave this object: pages get public data only. The 24 words of a
new wallet are shown only during its creation: one set per creation (a
reload or Back shows the same words), kept in this process's memory and
never on disk, and dropped (zeroed) when the wallet is saved, the creation
cancelled, the conduit locked or left idle. The door's secret
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


class WordsMismatch(ValueError):
    """Some of the words typed back differ from the words shown (`wrong`: their 1-based numbers)."""

    def __init__(self, wrong: list[int]) -> None:
        self.wrong = wrong
        said = f"word {wrong[0]} does" if len(wrong) == 1 else f"words {', '.join(map(str, wrong))} do"
        super().__init__(f"{said} not match what was shown: check your sheet")


@dataclass
class PendingWallet:
    wallet: Wallet
    confirm_positions: list[int]  # 1-based word numbers the person must type back
    created: float = field(default_factory=time.monotonic)


class ConduitState:
    can_replace_keystore = True  # restore may replace the keystore (after the person confirms it)

    def __init__(
        self,
        keystore_path: Path,
        idle_lock_s: float = 600.0,
        kdf: keystore.KdfParams = keystore.DEFAULT_KDF,
        secret: str | None = None,
    ) -> None:
        self.keystore_path = Path(keystore_path)
        self.idle_lock_s = idle_lock_s
        self.kdf = kdf
        # per start, memory only: the launcher's link gives it to the browser (on the desktop stick the
        # kiosk's link: both read it from a file in RAM made at boot, `secret`)
        self.secret = secret or secrets.token_urlsafe(32)
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
        """Keys or a new wallet's words in memory, and nobody has acted for the idle time."""
        held = self.unlocked or self.pending is not None
        return held and time.monotonic() - self.last_activity > self.idle_lock_s

    def keystore_problem(self) -> str | None:
        """Why the keystore cannot be unlocked whatever the passphrase (damaged, foreign), or None."""
        try:
            keystore.read_wallet(self.keystore_path)
        except keystore.KeystoreNotFound:
            return None if not self.keystore_path.exists() else f"{self.keystore_path} is not a keystore file"
        except keystore.KeystoreError as exc:
            return str(exc)
        return None

    # ------------------------------------------------------------ transitions

    def start_creation(self) -> PendingWallet:
        """The creation under way, or a new one: its words stay the same until it ends."""
        if self.pending is not None:
            return self.pending
        positions = sorted(secrets.SystemRandom().sample(range(1, 25), 3))
        self.pending = PendingWallet(Wallet.create(), positions)
        return self.pending

    def drop_pending(self) -> None:
        if self.pending is not None:
            self.pending.wallet.close()
            self.pending = None

    def check_words(self, answers: dict[int, str]) -> None:
        """Raise WordsMismatch naming every word typed back that differs from the one shown."""
        if self.pending is None:
            raise ValueError("there is no wallet being created: start again")
        words = self.pending.wallet.mnemonic().split()
        wrong = [n for n in self.pending.confirm_positions if answers.get(n, "").strip().lower() != words[n - 1]]
        if wrong:
            raise WordsMismatch(wrong)

    def finish_creation(self, answers: dict[int, str], passphrase: str) -> Wallet:
        pending = self.pending
        if pending is None:
            raise ValueError("there is no wallet being created: start again")
        self.check_words(answers)
        self.pending = None  # from here on owned by self.wallet (lock() must not close it)
        try:
            self._save_and_unlock(pending.wallet, passphrase)
        except BaseException:
            self.pending = pending  # nothing was saved: the person may try again
            raise
        return pending.wallet

    def restore(self, words: str, passphrase: str, bip39_passphrase: str = "", *, replace: bool = False) -> Wallet:
        """Save the wallet of `words`; an existing keystore is replaced only if `replace` says so."""
        wallet = Wallet.from_mnemonic(words, bip39_passphrase)
        try:
            self._save_and_unlock(wallet, passphrase, replace=replace)
        except BaseException:
            wallet.close()
            raise
        return wallet

    def _save_and_unlock(self, wallet: Wallet, passphrase: str, *, replace: bool = False) -> None:
        if self.has_keystore and not replace:
            raise ValueError("a keystore already exists on this stick; unlock it instead")
        keystore.check_new_passphrase(passphrase)
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
