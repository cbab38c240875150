"""The stick step (borgusb-stick.service): find the partition labelled BORGUSB, mount it read-only, copy the
marker, the keystore and the always-on flag into RAM (/run/borgusb/stick), unmount. A missing or unusable
keystore is told on every console and the node boots without an identity. The marker (borgusb.stick) may
carry ``join`` contacts and a static ``network`` for the node; a bad one is told and the defaults are used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

from ..stick import (
    ALWAYS_ON_FILE,
    FILESYSTEM,
    KEYSTORE,
    LABEL,
    MARKER,
    MAX_FILE,
    Marker,
    MarkerError,
    Network,
)
from .runtime import (
    ALWAYS_ON,
    ALWAYS_ON_CMDLINE,
    CELL_ARGS,
    IDENTITY,
    MOUNTPOINT,
    NODE_ENV,
    RUN,
    STICK,
    cmdline,
    say,
    uptime,
    wait_for_device,
    wipe,
)

NETWORK_UNIT = Path("/run/systemd/network/10-borgusb-stick.network")


def copy_from_stick(device: Path) -> list[str]:
    """Mount read-only, copy the few small files into RAM, unmount. Returns the names copied."""
    MOUNTPOINT.mkdir(parents=True, exist_ok=True, mode=0o700)
    STICK.mkdir(parents=True, exist_ok=True, mode=0o700)
    subprocess.run(
        # only FAT: a partition labelled BORGUSB with any other filesystem is never handed to its driver
        ["mount", "-t", FILESYSTEM, "-o", "ro,nodev,nosuid,noexec", str(device), str(MOUNTPOINT)],
        check=True,
        capture_output=True,
        text=True,
    )
    copied = []
    try:
        for name in (MARKER, KEYSTORE, ALWAYS_ON_FILE):
            src = MOUNTPOINT / name
            if src.is_file() and src.stat().st_size <= MAX_FILE:
                dst = STICK / name
                dst.write_bytes(src.read_bytes())
                dst.chmod(0o600)
                copied.append(name)
    finally:
        subprocess.run(["umount", str(MOUNTPOINT)], check=False)
        try:
            MOUNTPOINT.rmdir()
        except OSError:
            pass
    return copied


def read_marker() -> Marker:
    """The marker copied from the stick; without one, or with one that cannot be used (told), the defaults."""
    try:
        data = (STICK / MARKER).read_bytes()
    except OSError:
        return Marker()
    try:
        return Marker.parse(data)
    except MarkerError as exc:
        say(f"{exc}; using the defaults (DHCP, no contacts)")
        return Marker()


def check_keystore() -> dict[str, Any]:
    """What identity the keystore gives; an unusable one is said clearly and dropped."""
    path = STICK / KEYSTORE
    if not path.exists():  # said before the keystore module (and cryptography) is even loaded
        say("no keystore.json on the stick: the node starts without an identity")
        return {"identity": None, "reason": "no keystore"}
    from ..keystore import KeystoreError, KeystoreNotFound, read

    try:
        doc = read(path)
    except KeystoreNotFound:
        say("no keystore.json on the stick: the node starts without an identity")
        return {"identity": None, "reason": "no keystore"}
    except KeystoreError as exc:
        wipe(path)
        say(f"the keystore on the stick cannot be used: {exc}")
        say("the node starts without an identity; restore the wallet with 'borgusb wallet restore'")
        return {"identity": None, "reason": str(exc)}
    public = doc.get("public", {})
    say(f"identity {public.get('doge_address', '?')} ({doc.get('kind')}) found on the stick, copied to RAM")
    from .writeback import write_status

    write_status("saved", hashlib.sha256(path.read_bytes()).hexdigest())  # the stick holds what RAM holds
    return {"identity": public.get("doge_address"), "kind": doc.get("kind"), "keystore": str(path)}


def write_network(network: Network | None) -> None:
    """The marker's static address for every wired interface (networkd); without one, DHCP."""
    if network is None:
        return
    lines = ["[Match]", "Name=en* eth*", "", "[Network]", f"Address={network.address}", "LinkLocalAddressing=no"]
    if network.gateway:
        lines.append(f"Gateway={network.gateway}")
    NETWORK_UNIT.parent.mkdir(parents=True, exist_ok=True)
    NETWORK_UNIT.write_text("\n".join(lines) + "\n")


def write_node_env(marker: Marker) -> None:
    joins = list(marker.join)
    for word in cmdline():
        if word.startswith("borgusb.join="):
            joins += [j for j in word.split("=", 1)[1].split(",") if j]
    ip_args = node_args = ""
    if marker.network is not None:
        ip_args = "--ip " + marker.network.ip
        node_args = "--node " + marker.network.ip
    join_args = " ".join(f"--join {shlex.quote(j)}" for j in joins)
    NODE_ENV.write_text(f"BORGUSB_NODE_ARGS={node_args}\n")  # the conduit's
    write_cell_args(f"{ip_args} {join_args}".strip())


def write_cell_args(words: str) -> None:
    """The cells' arguments (``borgusb cell run NAME --args-file``), written once, atomically and
    readable by the cells' dynamic users: the cells started with the boot wait for this file."""
    tmp = CELL_ARGS.with_name(CELL_ARGS.name + ".tmp")
    tmp.write_text(f"# from the stick's marker and the kernel command line (borgusb-stick.service)\n{words}\n")
    tmp.chmod(0o644)
    os.replace(tmp, CELL_ARGS)


def cmd_stick(wait: float) -> int:
    RUN.mkdir(parents=True, exist_ok=True, mode=0o755)
    try:
        return _read_stick(wait)
    finally:
        if not CELL_ARGS.exists():  # the cells are waiting for it: never leave them to time out
            write_cell_args("")


def _read_stick(wait: float) -> int:
    started = uptime()
    device = wait_for_device(wait)
    found = uptime()
    marker = Marker()
    if device is None:
        say(f"no partition labelled {LABEL} found: the node starts without an identity")
        identity: dict[str, Any] = {"identity": None, "reason": "no stick"}
    else:
        try:
            copied = copy_from_stick(device)
        except subprocess.CalledProcessError as exc:
            say(f"cannot read the {LABEL} partition {device}: {exc.stderr.strip()}; no identity")
            copied = []
        marker = read_marker()
        identity = check_keystore()
        from .aimount import mount_ai  # before cell.args: the cells look for the AI stack when they start

        say(mount_ai(device))
        if ALWAYS_ON_FILE in copied or marker.always_on:
            ALWAYS_ON.touch()
        (STICK / ALWAYS_ON_FILE).unlink(missing_ok=True)
    if ALWAYS_ON_CMDLINE in cmdline():
        ALWAYS_ON.touch()
    if ALWAYS_ON.exists():
        say("always-on node: removing the stick will not power the machine off")
    write_network(marker.network)
    if marker.wifi is not None:
        from .wifi import write_wifi

        write_wifi(marker.wifi)
        say(f"Wi-Fi: joining {marker.wifi.ssid!r} (borgusb-wifi@.service)")
    write_node_env(marker)
    identity["device"] = str(device) if device else None
    done = uptime()
    identity["t"] = round(done - started, 2)
    identity["timeline"] = {"started": round(started, 1), "device": round(found, 1), "done": round(done, 1)}
    IDENTITY.write_text(json.dumps(identity, sort_keys=True) + "\n")
    return 0
