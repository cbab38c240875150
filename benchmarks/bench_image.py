#!/usr/bin/env python3
"""Benchmark of the USB image.

Prints: image and UKI size, the uncompressed RAM root, build time warm
(measured now) and cold (measured with --cold, which clears mkosi's caches;
otherwise the latest recorded cold build), boot time from QEMU start to
node-ready under TCG (and KVM where it works), RAM in use after boot (agents
idle) and, in the same boot, with one agent thinking (the brain's model loaded
from the stick's ai.squashfs and generating: the probe's ``think`` selftest),
and in the same run the baseline: the same kernel and initrd booted with every
BorgUSB service masked, to the serial login prompt.

Goals: UKI < 120 MB, RAM in use after boot < 400 MB, node-ready within
1.5 x the bare boot time. Needs root (mkosi, QEMU, a network namespace).

Then the desktop stick (--profile desktop) in the same run: its UKI, its RAM
root, the time from QEMU start to the conduit's welcome page drawn by the kiosk
on the VM's screen (read with tesseract from QMP screendumps, as
tests/image/test_desktop_image.py does) against the headless node-ready time
measured above (goal: within 2x), and the RAM in use with the page open (the
guest's own figures through virtio-balloon statistics; goal < 1 GiB, so that a
2 GiB PC runs it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "image"))

import screen as S  # noqa: E402
import vm as V  # noqa: E402

CACHE = Path(os.environ.get("BORGUSB_CACHE", Path.home() / ".cache" / "borgusb"))
INFO = CACHE / "image" / "build.json"
OUT = CACHE / "image" / "out"
DESKTOP_INFO = CACHE / "image" / "build-desktop.json"
DESKTOP_OUT = CACHE / "image" / "desktop" / "out"
WELCOME = "Your identity lives on this stick"
READY = r"BORGUSB-READY cells=(\d+)/(\d+) t=([\d.]+)s ip=\S+ identity=\S+ mem=(\d+)MiB"


def build(cold: bool, desktop: bool = False) -> dict:
    cmd = [sys.executable, str(ROOT / "image" / "build_image.py")] + (["--cold"] if cold else [])
    subprocess.run(cmd + (["--desktop"] if desktop else []), check=True, stdout=subprocess.DEVNULL)
    return json.loads((DESKTOP_INFO if desktop else INFO).read_text())


def unpacked(initrd: Path) -> int:
    out = subprocess.run(f"zstd -dc {initrd} | wc -c", shell=True, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@contextlib.contextmanager
def booted(image: Path, accel: str, selftest: tuple[str, ...] | None = (), **vm: Any) -> Iterator[V.VM]:
    """A VM booting a private copy of `image` on a network namespace; unless `selftest` is None, the stick's
    marker gives the guest that namespace's address and asks for those selftests. Everything is stopped
    and removed after, also on failure."""
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        stick = work / "stick.img"
        subprocess.run(["cp", "--sparse=always", str(image), str(stick)], check=True)
        ns = V.NetNS(f"borgusb-b{os.getpid()}")
        if selftest is not None:
            marker = {"format": "borgusb-stick", "version": 1, "network": {"address": f"{ns.GUEST_IP}/24"}}
            V.put_on_stick(
                stick, ".borgusb", json.dumps({**marker, **({"selftest": list(selftest)} if selftest else {})}).encode()
            )
        machine = V.VM(stick, work, netns=ns, accel=accel, **vm)
        try:
            yield machine
        finally:
            machine.close()
            ns.close()


def boot_desktop(image: Path, accel: str) -> tuple[float, dict[str, int]]:
    """Seconds from QEMU start to the welcome page read on the screen, and the guest's memory then (on a
    network, as the headless stick it is compared with)."""
    with booted(image, accel, display=True, cpu=V.DESKTOP_CPU) as machine:
        S.wait_for_text(machine, machine.workdir, WELCOME, 900, "welcome")
        return machine.elapsed(), machine.guest_memory()


def uki_cmdline(uki: Path) -> str:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "cmdline"
        subprocess.run(["objcopy", "-O", "binary", "--only-section=.cmdline", str(uki), str(out)], check=True)
        return out.read_bytes().rstrip(b"\0").decode().strip()


def boot_node(image: Path, accel: str) -> tuple[float, float, int, str, str, str, str, str]:
    """Seconds from QEMU start to BORGUSB-READY, guest uptime then, RAM in use MiB, cells, the
    guest's BORGUSB-MEM (where the RAM goes) and BORGUSB-TIMELINE (where the time went), then
    BORGUSB-THINK and BORGUSB-MEM-THINK: the same with one agent thinking."""
    with booted(image, accel, ("timeline", "think")) as machine:
        m = machine.wait_for(READY, 600)
        elapsed = machine.elapsed()
        mem = machine.wait_for(r"BORGUSB-MEM (.*)", 60)[1].strip()
        timeline = machine.wait_for(r"BORGUSB-TIMELINE (.*)", 60)[1].strip()
        # said once the model is loaded and generating; its answer takes minutes more under TCG
        think = machine.wait_for(r"BORGUSB-THINK (.*)", 900)[1].strip()
        think_mem = machine.wait_for(r"BORGUSB-MEM-THINK (.*)", 60)[1].strip()
        return elapsed, float(m[3]), int(m[4]), f"{m[1]}/{m[2]}", mem, timeline, think, think_mem


def boot_ready(image: Path, accel: str) -> float:
    """Seconds from QEMU start to BORGUSB-READY for the headless stick, no selftest asked."""
    with booted(image, accel) as machine:
        machine.wait_for(READY, 600)
        return machine.elapsed()


def boot_bare(image: Path, accel: str) -> float:
    """The same kernel and initrd (direct kernel boot), BorgUSB masked: seconds to the serial login prompt."""
    append = uki_cmdline(OUT / "borgusb.efi")
    append += " systemd.mask=borgusb-cells.target systemd.mask=borgusb-stick.service systemd.mask=borgusb-ready.service"
    kernel = (OUT / "borgusb.vmlinuz", OUT / "borgusb.initrd", append)
    with booted(image, accel, None, kernel=kernel) as machine:
        machine.wait_for(r"borgusb login:", 600)
        return machine.elapsed()


def boot_node_direct(image: Path, accel: str) -> float:
    """Node-ready with the same direct kernel boot as the baseline (same firmware path)."""
    append = uki_cmdline(OUT / "borgusb.efi")
    kernel = (OUT / "borgusb.vmlinuz", OUT / "borgusb.initrd", append)
    with booted(image, accel, kernel=kernel) as machine:
        machine.wait_for(READY, 600)
        return machine.elapsed()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cold", action="store_true", help="also measure a cold build (clears mkosi's caches)")
    ap.add_argument("--no-build", action="store_true", help="use the image as it is")
    ap.add_argument(
        "--desktop-only",
        action="store_true",
        help="only the desktop stick's figures, beside the headless stick's node-ready time (no thinking agent)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_image: needs root (mkosi, QEMU, network namespaces)", file=sys.stderr)
        return 1

    if args.desktop_only:
        info = build(cold=False) if not args.no_build else json.loads(INFO.read_text())
        t_node = boot_ready(Path(info["image"]), "tcg")
        print(f"headless stick: UEFI from USB to node-ready {t_node:.1f} s (TCG, the same run)")
        desktop(args.no_build, t_node)
        return 0
    if args.cold:
        build(cold=True)
    info = build(cold=False) if not args.no_build else json.loads(INFO.read_text())
    history = info.get("history", [])
    warm = [h for h in history if not h.get("cold")]
    cold = [h for h in history if h.get("cold")]
    image = Path(info["image"])
    raw = unpacked(OUT / "borgusb.initrd")

    print("USB image (bookworm, UKI whose initrd is the whole OS)")
    print(
        f"  image (ESP + BORGUSB data)   {info['image_bytes'] / 2**20:8.0f} MiB   (data partition "
        f"{info.get('data_sectors', 0) // 2048} MiB, of which ai.squashfs {info.get('ai_bytes', 0) / 2**20:.0f} MiB)"
    )
    print(f"  UKI                          {info['uki_bytes'] / 1e6:8.1f} MB   goal < 120 MB")
    print(f"  RAM root, uncompressed       {raw / 1e6:8.1f} MB")
    print(f"  build, warm                  {warm[-1]['duration_s'] if warm else float('nan'):8.1f} s")
    print(
        f"  build, cold                  {cold[-1]['duration_s'] if cold else float('nan'):8.1f} s"
        + ("" if cold else "   (never measured: run with --cold)")
    )

    accels = ["tcg"] + (["kvm"] if V.detect_accel() == "kvm" else [])
    for accel in accels:
        t_node, uptime, mem, cells, where, timeline, think, think_where = boot_node(image, accel)
        t_direct = boot_node_direct(image, accel)
        t_bare = boot_bare(image, accel)
        print(f"boot under {accel.upper()} (2 vCPUs, 2 GiB)")
        print(f"  UEFI from USB to node-ready  {t_node:8.1f} s   (guest uptime {uptime:.1f} s, cells {cells})")
        print(f"    when (guest uptime, s, started-active): {timeline.split(' cells-after=')[0]}")
        print(f"  direct boot to node-ready    {t_direct:8.1f} s")
        print(f"  baseline: bare, same kernel  {t_bare:8.1f} s   (BorgUSB masked, to login prompt)")
        print(
            f"  ratio node-ready / bare      {t_direct / t_bare:8.2f}     goal <= 1.5: "
            f"{'met' if t_direct / t_bare <= 1.5 else 'NOT MET'}"
        )
        mem_mb = mem * 2**20 / 1e6
        print(
            f"  RAM in use after boot        {mem:8d} MiB = {mem_mb:.0f} MB, goal < 400 MB: "
            f"{'met' if mem_mb < 400 else 'NOT MET'}   (agents idle)"
        )
        said = dict(w.split("=", 1) for w in think.split() if "=" in w)
        busy = int(said.get("mem", "0MiB").removesuffix("MiB"))
        print(
            f"  RAM in use, one agent thinking {busy:6d} MiB = {busy * 2**20 / 1e6:.0f} MB (+{busy - mem} MiB; peak "
            f"{said.get('peak', '?')}, the brain cell {said.get('brain', '?')} PSS, model loaded after "
            f"{said.get('loaded-after', '?')})"
        )
        fields = dict(w.split("=", 1) for w in where.split() if "=" in w)
        private = {
            name: float(mib)
            for name, mib in (pair.split(":") for pair in fields.get("private-cell", "").split(",") if ":" in pair)
        }
        print(f"  cell types running           {fields.get('cell-types', '?'):>8}   ({', '.join(private)})")
        print(f"  cell host (code, loaded once) {fields.get('cellhost-private', '?')} private")
        for name, mib in private.items():
            print(f"    {name:<26} {mib:8.1f} MiB private, goal < 8 MiB: {'met' if mib < 8 else 'NOT MET'}")
        print(f"  cells' private memory, total {sum(private.values()):8.1f} MiB")
        print(f"    where: {where}")
        print(f"    where, thinking: {think_where}")
        if accel == "tcg":
            desktop(args.no_build, t_node)
    if "kvm" not in accels:
        print("  (KVM does not run guests on this machine: TCG only)")
    return 0


def desktop(no_build: bool, t_node: float) -> None:
    """The desktop stick's budgets, beside the headless node's ready time measured in the same run."""
    info = build(cold=False, desktop=True) if not no_build else json.loads(DESKTOP_INFO.read_text())
    drawn, mem = boot_desktop(Path(info["image"]), "tcg")
    used = (mem["total-memory"] - mem["available-memory"]) / 2**20
    print("desktop stick (--profile desktop: the conduit full screen on the machine's display)")
    print(f"  UKI                          {info['uki_bytes'] / 1e6:8.1f} MB")
    print(f"  RAM root, uncompressed       {unpacked(DESKTOP_OUT / 'borgusb.initrd') / 1e6:8.1f} MB")
    print(
        f"  power-on to page drawn       {drawn:8.1f} s   vs headless node-ready {t_node:.1f} s: ratio "
        f"{drawn / t_node:.2f}, goal <= 2: {'met' if drawn <= 2 * t_node else 'NOT MET'}"
    )
    print(
        f"  RAM in use, page open        {used:8.0f} MiB = {used * 2**20 / 1e6:.0f} MB of "
        f"{mem['total-memory'] / 2**20:.0f} MiB, goal < 1 GiB: {'met' if used < 1024 else 'NOT MET'}"
    )


if __name__ == "__main__":
    sys.exit(main())
