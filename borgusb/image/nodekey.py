"""The node key of an unattended node (a Raspberry Pi), kept encrypted on its card.

On first boot ``python3 -m borgusb.image.boot nodekey`` (borgusb-nodekey.service,
only when the kernel command line has ``borgusb.nodekey=card``: the Pi profile)
generates a random secp256k1 node key and writes two files to the BORGUSB data
partition:

* ``node-key.json``: the key, in the keystore format (Argon2id + AES-256-GCM,
  ``keystore.save_node_key``);
* ``node-key.secret``: JSON ``{"version": 1, "secret": 64 hex, "binding": KIND}``,
  a random 256-bit secret.

The keystore passphrase is ``HMAC-SHA256(secret, "borgusb-node-key-v1" || machine)``
where ``machine`` is a value bound to the board: the SoC serial number that the
Pi firmware puts in the device tree (``serial-number``), else /proc/cpuinfo's
``Serial``, else the DMI product UUID of a PC, else nothing (binding ``none``).
Nobody types a passphrase, so the node boots unattended.

Threat model (told in the README): the secret lies beside the key, so the
encryption only means that a copy of the card alone, without the board, does
not open the key unless the attacker also learns or guesses the board's serial
(not a secret: any program on the Pi can read it, and Pi serials have far fewer
than 64 random bits, but each guess costs an Argon2id run). Someone with the
card *and* the board has the node key. It is a node key, not a wallet: it signs
node-to-node traffic and never a person's money or identity.

Later boots read both files read-only and never write (the card is not worn).
The card is written only when there is no usable key: first boot, or a card
moved to another board (the old key file is kept as ``node-key.json.old``;
the new board is a new node, as every machine has its own key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

KEY_FILE = "node-key.json"
SECRET_FILE = "node-key.secret"
CMDLINE_FLAG = "borgusb.nodekey=card"
INFO = "node.json"
CONTEXT = b"borgusb-node-key-v1\0"


def machine_binding(root: Path = Path("/")) -> tuple[str, bytes]:
    """(kind, value) of the best board-bound value this machine has."""
    for rel in ("sys/firmware/devicetree/base/serial-number", "proc/device-tree/serial-number"):
        try:
            value = (root / rel).read_bytes().strip(b"\0 \n")
        except OSError:
            continue
        if value and value.strip(b"0"):
            return "serial", value
    try:
        for line in (root / "proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("serial") and ":" in line:
                value = line.split(":", 1)[1].strip().encode()
                if value.strip(b"0"):
                    return "serial", value
    except OSError:
        pass
    try:
        value = (root / "sys/class/dmi/id/product_uuid").read_bytes().strip()
        if value:
            return "dmi", value
    except OSError:
        pass
    return "none", b""


def passphrase(secret: bytes, machine: bytes) -> str:
    return hmac.new(secret, CONTEXT + machine, hashlib.sha256).hexdigest()


def read_secret(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
        bytes.fromhex(doc["secret"])
        return doc if len(doc["secret"]) == 64 else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


EXPORT = Path("/run/borgusb/node.key")  # RAM: the cells get it as a systemd credential


def export_key(key: Any, path: Path | None) -> None:
    """Hand the unlocked key to the cells: hex in a root-only file on a RAM filesystem."""
    if path is None:
        return
    secret = key.secret_bytes()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(bytes(secret).hex() + "\n")
    finally:
        for i in range(len(secret)):
            secret[i] = 0


def ensure(
    card: Path,
    binding: tuple[str, bytes],
    writable: Callable[[], Any] | None = None,
    kdf: Any = None,
    export: Path | None = None,
) -> dict[str, Any]:
    """Load the node key from ``card`` (a directory), or make one there.

    ``writable`` is a context-manager factory that makes ``card`` writable for
    the duration (a read-write remount); it is entered only when a file must
    be written. Returns the public facts: fingerprint, public key, binding,
    whether the key was created, and why.
    """
    from .. import keystore
    from ..keys import SigningKey

    kind, machine = binding
    key_path, secret_path = card / KEY_FILE, card / SECRET_FILE
    secret_doc = read_secret(secret_path)
    reason = "first boot"
    if secret_doc and key_path.exists():
        secret = bytes.fromhex(secret_doc["secret"])
        try:
            key = keystore.load_node_key(key_path, passphrase(secret, machine))
        except keystore.WrongPassphrase:
            reason = "the key on the card belongs to another board (or its binding changed)"
        except keystore.KeystoreError as exc:
            reason = f"the key on the card cannot be used: {exc}"
        else:
            try:
                export_key(key, export)
                return {
                    "fingerprint": key.fingerprint,
                    "public_key": key.public_key_hex,
                    "binding": kind,
                    "created": False,
                    "reason": "loaded",
                }
            finally:
                key.close()
    elif key_path.exists() or secret_path.exists():
        reason = "the node key files on the card are incomplete"

    secret = os.urandom(32)
    key = SigningKey.generate()
    try:
        manager = writable() if writable else _Nothing()
        with manager:
            if key_path.exists():
                os.replace(key_path, card / (KEY_FILE + ".old"))
            keystore.atomic_write(
                secret_path,
                (json.dumps({"version": 1, "secret": secret.hex(), "binding": kind}, sort_keys=True) + "\n").encode(),
            )
            args = (key_path, key, passphrase(secret, machine))
            keystore.save_node_key(*args, kdf) if kdf else keystore.save_node_key(*args)
        export_key(key, export)
        return {
            "fingerprint": key.fingerprint,
            "public_key": key.public_key_hex,
            "binding": kind,
            "created": True,
            "reason": reason,
        }
    finally:
        key.close()


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class Mounted:
    """Mount a FAT partition read-only at a place; ``writable()`` remounts it read-write for a while."""

    def __init__(self, device: Path, where: Path) -> None:
        self.device, self.where = device, where

    def __enter__(self) -> Path:
        self.where.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(
            ["mount", "-o", "ro,nodev,nosuid,noexec,umask=077", str(self.device), str(self.where)],
            check=True,
            capture_output=True,
            text=True,
        )
        return self.where

    def writable(self) -> _ReadWrite:
        return _ReadWrite(self.where)

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", str(self.where)], check=False)
        try:
            self.where.rmdir()
        except OSError:
            pass


class _ReadWrite:
    def __init__(self, where: Path) -> None:
        self.where = where

    def __enter__(self) -> None:
        subprocess.run(["mount", "-o", "remount,rw", str(self.where)], check=True, capture_output=True, text=True)

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["sync", "-f", str(self.where)], check=False)
        subprocess.run(["mount", "-o", "remount,ro", str(self.where)], check=False)


# ------------------------------------------------------------ the boot step (borgusb-nodekey.service)


def boot_step(wait: float) -> int:
    """The node key on the BORGUSB partition: loaded, or made on first boot; without a usable card, one for
    this boot only."""
    from ..stick import LABEL
    from .runtime import RUN, say, uptime, wait_for_device

    RUN.mkdir(parents=True, exist_ok=True, mode=0o755)
    device = wait_for_device(wait)
    if device is None:
        say(f"no partition labelled {LABEL}: the node key lives in RAM only and changes at every boot")
        return _ephemeral_node_key()
    binding = machine_binding()
    started = uptime()
    try:
        mounted = Mounted(device, RUN / "mnt-nodekey")
        with mounted as card:
            info = ensure(card, binding, writable=mounted.writable, export=EXPORT)
    except subprocess.CalledProcessError as exc:
        say(f"cannot use the {LABEL} partition for the node key: {(exc.stderr or '').strip()}")
        return _ephemeral_node_key()
    except Exception as exc:  # noqa: BLE001 - the node must come up anyway
        say(f"the node key could not be loaded or made: {exc}")
        return _ephemeral_node_key()
    info["t"] = round(uptime() - started, 2)
    (RUN / INFO).write_text(json.dumps(info, sort_keys=True) + "\n")
    if info["created"]:
        say(
            f"node key {info['fingerprint']} created ({info['reason']}), encrypted on the {LABEL} partition, "
            f"bound to this board ({info['binding']})"
        )
    else:
        say(f"node key {info['fingerprint']} loaded from the {LABEL} partition ({info['binding']}, {info['t']}s)")
    return 0


def _ephemeral_node_key() -> int:
    """No usable card: the cells still get one node key, made for this boot only (RAM)."""
    from ..keys import SigningKey

    key = SigningKey.generate()
    try:
        export_key(key, EXPORT)
    finally:
        key.close()
    return 0
