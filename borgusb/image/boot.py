"""Boot-time steps of the USB image, one per systemd unit.

* ``stick`` (borgusb-stick.service): wait for the partition labelled BORGUSB,
  mount it read-only, copy the marker, the keystore and the always-on flag into
  RAM (/run/borgusb/stick), unmount. A missing or unusable keystore is told on
  every console and the node boots without an identity. The marker (JSON) may
  carry ``join`` contacts and a static ``network`` for the node.
* ``ready`` (borgusb-ready.service): wait until every cell wanted by
  borgusb-cells.target answers on its monitoring port, then print
  ``BORGUSB-READY cells=N/M t=S identity=...`` on every console.
* ``nodekey`` (borgusb-nodekey.service, Pi profile: ``borgusb.nodekey=card``):
  load the node key from the BORGUSB partition, or make it on first boot
  (borgusb.image.nodekey: encrypted, passphrase bound to the board).
* ``removed`` (borgusb-stick-removed.service, started by a udev rule when the
  BORGUSB device goes away): unless always-on, kill the cells, wipe the copies
  of the keystore, power off at once.

Only the standard library and borgusb.keystore are imported, so each step
starts fast even on a slow machine.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import socket
import sys
import time
from pathlib import Path
from typing import Any

from . import ALWAYS_ON_CMDLINE, ALWAYS_ON_FILE, KEYSTORE, LABEL, MARKER

RUN = Path(os.environ.get("BORGUSB_RUN", "/run/borgusb"))
STICK = RUN / "stick"
MOUNTPOINT = RUN / "mnt"
NODE_ENV = RUN / "node.env"
CELL_ARGS = RUN / "cell.args"  # the cells' --ip and --join (borgusb cell run --args-file)
IDENTITY = RUN / "identity.json"
ALWAYS_ON = RUN / "always-on"
NETWORK_UNIT = Path("/run/systemd/network/10-borgusb-stick.network")
CELLS_WANTS = Path("/etc/systemd/system/borgusb-cells.target.wants")
DEVICE = Path("/dev/disk/by-label") / LABEL


# ------------------------------------------------------------------ console


def say(message: str) -> None:
    """Tell the person: every active console (screen and serial) and the journal."""
    line = f"BorgUSB: {message}"
    print(line, flush=True)
    try:
        names = Path("/sys/class/tty/console/active").read_text().split()
    except OSError:
        names = []
    for name in names:
        try:
            fd = os.open(f"/dev/{name}", os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            os.write(fd, f"\r\n{line}\r\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def cmdline() -> list[str]:
    try:
        return shlex.split(Path("/proc/cmdline").read_text())
    except OSError:
        return []


# ------------------------------------------------------------------ stick


def wait_for_device(timeout: float) -> Path | None:
    deadline = time.monotonic() + timeout
    while True:
        if DEVICE.exists():
            return DEVICE.resolve()
        if time.monotonic() > deadline:
            return None
        subprocess.run(["udevadm", "settle", "--timeout=1"], check=False)
        time.sleep(0.2)


def copy_from_stick(device: Path) -> list[str]:
    """Mount read-only, copy the few small files into RAM, unmount. Returns the names copied."""
    MOUNTPOINT.mkdir(parents=True, exist_ok=True, mode=0o700)
    STICK.mkdir(parents=True, exist_ok=True, mode=0o700)
    subprocess.run(
        ["mount", "-o", "ro,nodev,nosuid,noexec", str(device), str(MOUNTPOINT)],
        check=True, capture_output=True, text=True,
    )
    copied = []
    try:
        for name in (MARKER, KEYSTORE, ALWAYS_ON_FILE):
            src = MOUNTPOINT / name
            if src.is_file() and src.stat().st_size <= 1 << 20:
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


def read_marker() -> dict[str, Any]:
    path = STICK / MARKER
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        say(f"the marker file {MARKER} on the stick is not valid JSON ({exc}); using defaults")
        return {}
    return value if isinstance(value, dict) else {}


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
    return {"identity": public.get("doge_address"), "kind": doc.get("kind"), "keystore": str(path)}


def write_network(network: dict[str, Any]) -> None:
    address = network.get("address")
    if not address:
        return
    lines = ["[Match]", "Name=en* eth*", "", "[Network]", f"Address={address}", "LinkLocalAddressing=no"]
    if network.get("gateway"):
        lines.append(f"Gateway={network['gateway']}")
    NETWORK_UNIT.parent.mkdir(parents=True, exist_ok=True)
    NETWORK_UNIT.write_text("\n".join(lines) + "\n")


def write_node_env(marker: dict[str, Any]) -> None:
    joins = [str(j) for j in marker.get("join", []) if isinstance(j, (str, int))]
    for word in cmdline():
        if word.startswith("borgusb.join="):
            joins += [j for j in word.split("=", 1)[1].split(",") if j]
    ip_args = node_args = ""
    address = (marker.get("network") or {}).get("address")
    if address:
        ip_args = "--ip " + str(address).split("/")[0]
        node_args = "--node " + str(address).split("/")[0]
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
    marker: dict[str, Any] = {}
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
        if ALWAYS_ON_FILE in copied or marker.get("always_on") is True:
            ALWAYS_ON.touch()
        (STICK / ALWAYS_ON_FILE).unlink(missing_ok=True)
    if ALWAYS_ON_CMDLINE in cmdline():
        ALWAYS_ON.touch()
    if ALWAYS_ON.exists():
        say("always-on node: removing the stick will not power the machine off")
    write_network(marker.get("network") or {})
    write_node_env(marker)
    identity["device"] = str(device) if device else None
    done = uptime()
    identity["t"] = round(done - started, 2)
    identity["timeline"] = {"started": round(started, 1), "device": round(found, 1), "done": round(done, 1)}
    IDENTITY.write_text(json.dumps(identity, sort_keys=True) + "\n")
    return 0


# ------------------------------------------------------------------ ready


def wanted_cells() -> list[str]:
    try:
        names = sorted(p.name for p in CELLS_WANTS.iterdir())
    except OSError:
        return []
    return [n[len("borgusb-cell@"):-len(".service")] for n in names if n.startswith("borgusb-cell@")]


def mon_port(cell: str) -> int | None:
    try:
        from .. import dna

        return dna.get(cell).mon_port
    except Exception:  # noqa: BLE001 - an unknown cell is reported as not ready
        return None


def node_ip() -> str:
    """The address the cells were given (cell.args' --ip), else the one with the default route."""
    try:
        words = shlex.split(CELL_ARGS.read_text(), comments=True)
    except (OSError, ValueError):
        words = []
    if "--ip" in words[:-1]:
        return words[words.index("--ip") + 1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def http_get(host: str, port: int, path: str, timeout: float = 2.0,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body) of one plain HTTP/1.0 GET; `headers`, if given, receives the reply's
    headers (names in lower case). The probe runs while the cells start and is counted in the
    RAM it reports, so it does without urllib (which loads http.client, email and OpenSSL): a
    local monitoring port or the conduit, nothing else, is asked."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise OSError(f"not an HTTP reply from {host}:{port}")
    if headers is not None:
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
    return int(parts[1]), body


def answers(ip: str, port: int) -> bool:
    try:
        return http_get(ip, port, "/status")[0] == 200
    except OSError:
        return False


def cell_fingerprints(ip: str, cells: list[str]) -> list[str]:
    """The node-key fingerprint each ready cell signs with (from its monitoring JSON)."""
    out = set()
    for cell in cells:
        port = mon_port(cell)
        try:
            status, body = http_get(ip, port, "/status")
            if status == 200:
                out.add(json.loads(body)["fingerprint"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(out)


def mem_in_use_mib(info: dict[str, int] | None = None) -> int:
    """RAM in use (MemTotal - MemAvailable, as `free` counts it; the RAM root counts as in use)."""
    info = info or meminfo()
    return (info["MemTotal"] - info["MemAvailable"]) // 1024


CONDUIT_PORT = 8088  # borgusb-conduit.socket


def cmd_ready(timeout: float) -> int:
    cells = wanted_cells()
    ip = node_ip()
    pending = {c: mon_port(c) for c in cells}
    ready: list[str] = []
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        if time.monotonic() > next_report:
            say(f"still waiting for cells: {', '.join(sorted(pending))} (t={uptime():.0f}s)")
            next_report += 60
        for cell, port in list(pending.items()):
            if port is not None and answers(ip, port):
                ready.append(cell)
                del pending[cell]
        if pending:
            time.sleep(0.5)
    try:
        identity = json.loads(IDENTITY.read_text()).get("identity") or "none"
    except (OSError, ValueError):
        identity = "none"
    line = (f"BORGUSB-READY cells={len(ready)}/{len(cells)} t={uptime():.1f}s ip={ip} identity={identity}"
            f" mem={mem_in_use_mib()}MiB")
    if pending:
        line += " missing=" + ",".join(sorted(pending))
    try:
        line += " node=" + json.loads((RUN / "node.json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        pass
    line += " cellkeys=" + ",".join(cell_fingerprints(ip, ready))  # one key when the cells use the node key
    line += " conduit=" + conduit_state()
    say(line)
    say(memory_report(cells))
    say(hygiene_report())
    selftests = read_marker().get("selftest") or []
    if "timeline" in selftests:  # where the boot's time went, for the image benchmark
        say("BORGUSB-TIMELINE " + boot_timeline(cells))
    if "conduit" in selftests:
        say(conduit_selftest())
    return 0 if not pending else 1


def boot_timeline(cells: list[str]) -> str:
    """``unit=start-active`` in seconds since the kernel started, for the units on the way to the
    cells (the boot is not finished yet, so systemd-analyze's own reports are not available)."""
    units = ["systemd-modules-load.service", "borgusb-kernel-modules.service", "usr-lib-python3.11.mount",
             "systemd-udev-trigger.service", "local-fs.target", "sysinit.target", "basic.target",
             "borgusb-stick.service",
             "systemd-networkd.service", "network-online.target", *[f"borgusb-cell@{c}.service" for c in cells]]
    out = []
    for unit in units:
        props = subprocess.run(["systemctl", "show", "-P", "InactiveExitTimestampMonotonic", "-P",
                                "ActiveEnterTimestampMonotonic", unit], capture_output=True, text=True,
                               check=False).stdout.split()
        if len(props) == 2 and all(p.isdigit() for p in props):
            out.append(f"{unit.split('.')[0]}={int(props[0]) / 1e6:.1f}-{int(props[1]) / 1e6:.1f}")
    try:
        stick = json.loads(IDENTITY.read_text()).get("timeline") or {}
        out.append("stick-python=" + "-".join(str(stick[k]) for k in ("started", "device", "done")))
    except (OSError, ValueError, KeyError):
        pass
    if cells:
        after = subprocess.run(["systemctl", "show", "-P", "After", f"borgusb-cell@{cells[0]}.service"],
                               capture_output=True, text=True, check=False).stdout.split()
        out.append("cells-after=" + ",".join(sorted(after)))
    return " ".join(out)


def unit_active(unit: str) -> bool:
    return subprocess.run(["systemctl", "is-active", "--quiet", unit], check=False).returncode == 0


def conduit_state() -> str:
    """``running``; ``on-demand`` (systemd listens on 127.0.0.1:8088 and starts it on the first
    connection, borgusb-conduit.socket); else ``off``."""
    if unit_active("borgusb-conduit.service"):
        return "running"
    return "on-demand" if unit_active("borgusb-conduit.socket") else "off"


def conduit_selftest(timeout: float = 300.0) -> str:
    """``BORGUSB-SELFTEST``: one browser-like request to the conduit (the stick's marker asks for
    it with ``"selftest": ["conduit"]``); on a socket-activated conduit it is the one that starts it."""
    before = conduit_state()
    started = time.monotonic()
    try:
        path, hops = "/", 0
        while True:  # the conduit's front door redirects to /welcome, /unlock or /home
            headers: dict[str, str] = {}
            status, page = http_get("127.0.0.1", CONDUIT_PORT, path, timeout=timeout, headers=headers)
            location = headers.get("location", "")
            if status not in (301, 302, 303, 307) or not location.startswith("/") or hops >= 3:
                break
            path, hops = location, hops + 1
        result = f"status={status} bytes={len(page)} page={path}"
    except OSError as exc:
        result = f"failed={exc.__class__.__name__}"
    return (f"BORGUSB-SELFTEST conduit {result} was={before} now={conduit_state()}"
            f" answered-in={time.monotonic() - started:.1f}s")


def meminfo() -> dict[str, int]:
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        info[key] = int(value.split()[0])
    return info


def unit_pss_kib(unit: str) -> int:
    """Proportional set size of every process of a unit (shared pages counted fairly)."""
    total = 0
    group = subprocess.run(["systemctl", "show", "-P", "ControlGroup", unit], capture_output=True, text=True,
                           check=False).stdout.strip()
    try:
        pids = Path(f"/sys/fs/cgroup{group}/cgroup.procs").read_text().split() if group else []
    except OSError:
        pids = []
    for pid in pids:
        try:
            for row in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if row.startswith("Pss:"):
                    total += int(row.split()[1])
        except OSError:
            continue
    return total


def anon_by_program(top: int = 8) -> str:
    """Private anonymous memory (heap, stacks) of every process, summed by program name, largest
    first: what the RAM root's files cannot explain. ``name:MiB`` pairs."""
    totals: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            name = (proc / "comm").read_text().strip()
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            rows = (proc / "smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        if name.startswith("python") and len(argv) > 2:  # name the module or script it runs
            args = [a.decode(errors="replace") for a in argv[1:] if a]
            if args and args[0] == "-m" and len(args) > 1:
                name = args[1] + (f".{args[2]}" if len(args) > 2 else "")
            elif args:
                name = Path(args[0]).name
        for row in rows:
            if row.startswith("Pss_Anon:"):
                totals[name] = totals.get(name, 0) + int(row.split()[1])
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return ",".join(f"{name}:{kib // 1024}" for name, kib in ranked)


def hygiene_report() -> str:
    """``BORGUSB-HYGIENE``: the memory settings the image promises, as the running kernel has them:
    active swap areas (none), freed memory zeroed (init_on_free), transparent huge pages (never)."""
    try:
        swaps = len(Path("/proc/swaps").read_text().splitlines()[1:])
        words = Path("/proc/cmdline").read_text().split()
    except OSError:
        swaps, words = -1, []
    zeroed = "on" if "init_on_free=1" in words else "off"
    return f"BORGUSB-HYGIENE swaps={swaps} zero-on-free={zeroed} thp={thp_mode()}"


def memory_report(cells: list[str]) -> str:
    """``BORGUSB-MEM``: where the RAM goes once the node is up (MiB)."""
    info = meminfo()
    per = {c: unit_pss_kib(f"borgusb-cell@{c}.service") // 1024 for c in cells}
    conduit = unit_pss_kib("borgusb-conduit.service") // 1024
    return (f"BORGUSB-MEM total={info['MemTotal'] // 1024}MiB used={mem_in_use_mib(info)}MiB"
            f" available={info['MemAvailable'] // 1024}MiB root+tmpfs={info.get('Shmem', 0) // 1024}MiB"
            f" cells={sum(per.values())}MiB conduit={conduit}MiB kernel={info.get('Slab', 0) // 1024 + info.get('KernelStack', 0) // 1024 + info.get('PageTables', 0) // 1024}MiB"
            " per-cell=" + ",".join(f"{c}:{v}" for c, v in per.items())
            + f" anon-all={info.get('AnonPages', 0) // 1024}MiB anon-top=" + anon_by_program()
            + " meminfo=" + ",".join(f"{k}:{info.get(k, 0) // 1024}" for k in (
                "MemFree", "Cached", "Buffers", "Unevictable", "Mlocked", "SReclaimable", "SUnreclaim",
                "VmallocUsed", "Percpu", "KernelStack", "PageTables", "CmaTotal", "HugePages_Total"))
            + f" min_free={min_free_kib() // 1024}MiB")


def min_free_kib() -> int:
    """The kernel's free-page reserve (vm.min_free_kbytes): RAM that counts as in use."""
    try:
        return int(Path("/proc/sys/vm/min_free_kbytes").read_text())
    except (OSError, ValueError):
        return 0


def thp_mode() -> str:
    """Transparent huge pages' mode (the bracketed word), 'none' when the kernel has no THP."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "none"
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else text.strip()


# ------------------------------------------------------------------ removed


def wipe(path: Path) -> None:
    try:
        size = path.stat().st_size
        with open(path, "r+b", buffering=0) as fh:
            fh.write(b"\0" * size)
            os.fsync(fh.fileno())
        path.unlink()
    except OSError:
        pass


def cmd_removed() -> int:
    if ALWAYS_ON.exists() or ALWAYS_ON_CMDLINE in cmdline():
        say("the stick was removed; always-on node: the cells keep running")
        return 0
    say("the stick was removed: stopping the cells, wiping keys from memory, powering off")
    subprocess.run(["systemctl", "stop", "--no-block", "borgusb-conduit.socket"], check=False)  # no restart
    subprocess.run(["systemctl", "kill", "--signal=SIGKILL", "borgusb-cell@*.service", "borgusb-conduit.service"],
                   check=False)
    if STICK.exists():
        for path in STICK.iterdir():
            wipe(path)
    subprocess.run(["sync"], check=False)
    os.execvp("systemctl", ["systemctl", "poweroff", "--force"])


# ------------------------------------------------------------------ nodekey


def cmd_nodekey(wait: float) -> int:
    """The node key on the BORGUSB partition: loaded, or made on first boot (see nodekey.py)."""
    from . import nodekey

    RUN.mkdir(parents=True, exist_ok=True, mode=0o755)
    device = wait_for_device(wait)
    if device is None:
        say(f"no partition labelled {LABEL}: the node key lives in RAM only and changes at every boot")
        return _ephemeral_node_key(nodekey)
    binding = nodekey.machine_binding()
    started = uptime()
    try:
        with nodekey.Mounted(device, RUN / "mnt-nodekey") as card:
            info = nodekey.ensure(card, binding, writable=lambda: nodekey.Mounted.writable(
                nodekey.Mounted(device, card)), export=nodekey.EXPORT)
    except subprocess.CalledProcessError as exc:
        say(f"cannot use the {LABEL} partition for the node key: {(exc.stderr or '').strip()}")
        return _ephemeral_node_key(nodekey)
    except Exception as exc:  # noqa: BLE001 - the node must come up anyway
        say(f"the node key could not be loaded or made: {exc}")
        return _ephemeral_node_key(nodekey)
    info["t"] = round(uptime() - started, 2)
    (RUN / nodekey.INFO).write_text(json.dumps(info, sort_keys=True) + "\n")
    if info["created"]:
        say(f"node key {info['fingerprint']} created ({info['reason']}), encrypted on the {LABEL} partition, "
            f"bound to this board ({info['binding']})")
    else:
        say(f"node key {info['fingerprint']} loaded from the {LABEL} partition ({info['binding']}, {info['t']}s)")
    return 0


def _ephemeral_node_key(nodekey) -> int:  # type: ignore[no-untyped-def]
    """No usable card: the cells still get one node key, made for this boot only (RAM)."""
    from ..keys import SigningKey

    key = SigningKey.generate()
    try:
        nodekey.export_key(key, nodekey.EXPORT)
    finally:
        key.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("stick", "ready", "removed", "nodekey"):
        print("usage: python3 -m borgusb.image.boot stick|ready|removed|nodekey", file=sys.stderr)
        return 2
    if argv[0] == "nodekey":
        return cmd_nodekey(float(os.environ.get("BORGUSB_STICK_WAIT", "20")))
    if argv[0] == "stick":
        return cmd_stick(float(os.environ.get("BORGUSB_STICK_WAIT", "20")))
    if argv[0] == "ready":
        return cmd_ready(float(os.environ.get("BORGUSB_READY_TIMEOUT", "600")))
    return cmd_removed()


if __name__ == "__main__":
    sys.exit(main())
