"""The Raspberry Pi SD card image (./build.sh pi): its layout, and the node booting from it.

* MBR (the Pi boot ROM reads nothing else), a bootable FAT boot partition and
  the BORGUSB data partition with its marker;
* config.txt names a kernel, an initramfs and, per board, a device tree that
  exist on the boot partition; every supported board's device tree is there;
  cmdline.txt has no root= (the root is the initramfs, in RAM);
* the image's own kernel, device tree and initramfs boot on QEMU's raspi3b
  (1 GiB, like the board) to the node-ready line; if that machine model cannot
  run the node the reason is printed and recorded, and the same initramfs boots
  on -M virt instead (also 1 GiB);
* after boot the memory footprint from the console is printed and checked
  against 1 GiB with room to spare; the node key was made on first boot and
  written to the card (encrypted). (Loading it again on a later boot and a card
  moved to another board: tests/pi/test_nodekey.py.)
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import armvm
import pytest
import sdcard as sd

pytestmark = pytest.mark.slow

CACHE = Path(os.environ.get("BORGUSB_CACHE", Path.home() / ".cache" / "borgusb"))
OUTCOME = CACHE / "image" / "pi-boot.json"
BOOT_TIMEOUT = float(os.environ.get("BORGUSB_PI_BOOT_TIMEOUT", "600"))
READY = (
    r"BORGUSB-READY cells=(\d+)/(\d+) t=([\d.]+)s ip=(\S+) identity=(\S+) mem=(\d+)MiB(?: missing=\S+)?"
    r"(?: node=(\S+))?(?: cellkeys=(\S*))?"
)
MEM = r"BORGUSB-MEM total=(\d+)MiB used=(\d+)MiB available=(\d+)MiB[^\r\n]*"
# The whole node in 1 GiB "with room to spare": at most 3/4 of the board's RAM in use.
BOARD_MIB = 1024
MAX_USED_MIB = 512  # issue 14: every cell type running, the Pi under 512 MiB of its 1 GiB
SUPPORTED = {
    "Raspberry Pi 3 Model B": "bcm2837-rpi-3-b.dtb",
    "Raspberry Pi 3 Model B+": "bcm2837-rpi-3-b-plus.dtb",
    "Raspberry Pi 4 Model B": "bcm2711-rpi-4-b.dtb",
    "Raspberry Pi Zero 2 W": "bcm2837-rpi-zero-2-w.dtb",
}


def config_values(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("["):
            continue
        if line.startswith("initramfs "):
            values.setdefault("initramfs", []).append(line.split()[1])
        elif "=" in line:
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_partition_table_and_labels(pi_image: Path) -> None:
    t = sd.table(pi_image)
    assert t["label"] == "dos", "the Pi boot ROM needs an MBR"
    boot, data = t["partitions"]
    assert boot["type"] == "c" and boot.get("bootable") and data["type"] == "c"
    assert boot["start"] % 2048 == 0 and data["start"] >= boot["start"] + boot["size"]
    off_boot, off_data = sd.offsets(pi_image)
    assert sd.fat_label(pi_image, off_boot) == "BORGBOOT"
    assert sd.fat_label(pi_image, off_data) == "BORGUSB"
    marker = json.loads(sd.read(pi_image, off_data, ".borgusb"))
    assert marker["format"] == "borgusb-stick" and marker["always_on"] is True


def test_config_txt_names_files_that_exist_and_every_board_has_its_dtb(pi_image: Path, pi_build: dict) -> None:
    off_boot, _ = sd.offsets(pi_image)
    files = {n.lower() for n in sd.listing(pi_image, off_boot)}
    config = sd.read(pi_image, off_boot, "config.txt").decode()
    v = config_values(config)
    assert v["arm_64bit"] == ["1"]
    (kernel,) = v["kernel"]
    (initrd,) = v["initramfs"]
    assert kernel.lower() in files and initrd.lower() in files, (kernel, initrd, sorted(files))
    assert v["device_tree"], "config.txt names no device tree"
    for dtb in v["device_tree"]:
        assert dtb.lower() in files, f"config.txt names {dtb}, which is not on the boot partition"
    for board, dtb in SUPPORTED.items():
        assert dtb in v["device_tree"] and dtb in files, f"{board}: {dtb} missing"
    for blob in ("bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat"):
        assert blob in files, f"Pi firmware file {blob} missing (raspi-firmware)"
    cmdline = sd.read(pi_image, off_boot, "cmdline.txt").decode()
    assert cmdline.count("\n") == 1 and cmdline.endswith("\n"), "cmdline.txt must be a single line"
    assert "root=" not in cmdline and "console=ttyS0" not in cmdline and "borgusb.alwayson=1" in cmdline
    pi5 = "bcm2712-rpi-5-b.dtb"
    print(
        f"\nboot partition: {len(files)} files; DTBs {pi_build['dtbs']}; "
        f"Raspberry Pi 5: {'DTB present' if pi5 in files else 'no DTB in this kernel (not supported by this image)'}"
        f"\ncmdline.txt: {cmdline.strip()}"
    )


def _boot(machine: str, image: Path, work: Path, timeout: float) -> tuple[armvm.ArmVM, re.Match[str] | None]:
    off_boot, _ = sd.offsets(image)
    config = config_values(sd.read(image, off_boot, "config.txt").decode())
    kernel = sd.extract(image, off_boot, config["kernel"][0], work / "kernel")
    initrd = sd.extract(image, off_boot, config["initramfs"][0], work / "initrd")
    dtb = sd.extract(image, off_boot, "bcm2837-rpi-3-b.dtb", work / "rpi3b.dtb")
    append = sd.read(image, off_boot, "cmdline.txt").decode().strip()
    vm = armvm.ArmVM(machine, work, card=image, kernel=kernel, initrd=initrd, dtb=dtb, append=append)
    # A stalled console for 4 minutes means the machine model is stuck (no time to lose under TCG).
    return vm, vm.wait_for(READY, timeout, stall=240)


def _why(vm: armvm.ArmVM) -> str:
    text = vm.text()
    if not text.strip():
        return "no output at all on the serial console (the kernel did not start or has no console on the PL011)"
    for needle in ("Kernel panic", "Initramfs unpacking failed", "Out of memory", "Unable to handle kernel"):
        if needle in text:
            line = next(line for line in text.splitlines() if needle in line)
            return f"{needle}: {line.strip()[:200]}"
    last = [line for line in text.splitlines() if line.strip()][-3:]
    state = "exited" if vm.proc.poll() is not None else "still running"
    return f"no ready line after {vm.elapsed():.0f}s (qemu {state}); console ends with: {' | '.join(last)[:400]}"


def test_boot_on_raspi3b_or_virt_ready_and_memory(pi_image: Path, tmp_path: Path) -> None:
    card = armvm.pow2_copy(pi_image, tmp_path / "card.img")
    outcome: dict = {"finished": int(time.time())}
    vm, m = _boot("raspi3b", card, tmp_path, BOOT_TIMEOUT)
    try:
        outcome["raspi3b"] = {
            "ready": bool(m),
            "seconds": round(vm.elapsed(), 1),
            "line": m[0] if m else None,
            "why": None if m else _why(vm),
        }
        mem = vm.wait_for(MEM, 60) if m else None
        console = vm.text()
    finally:
        vm.close()
    (tmp_path / "raspi3b-console.log").write_text(console)
    print(
        f"\nraspi3b (1 GiB, TCG): {'READY' if m else 'NOT READY'} after {outcome['raspi3b']['seconds']}s"
        + (f": {m[0]}" if m else f": {outcome['raspi3b']['why']}")
    )
    machine = "raspi3b"
    if not m:
        machine = "virt"
        card = armvm.pow2_copy(pi_image, tmp_path / "card-virt.img")
        vm, m = _boot("virt", card, tmp_path, BOOT_TIMEOUT)
        try:
            outcome["virt"] = {
                "ready": bool(m),
                "seconds": round(vm.elapsed(), 1),
                "line": m[0] if m else None,
                "why": None if m else _why(vm),
            }
            mem = vm.wait_for(MEM, 60) if m else None
            console = vm.text()
        finally:
            vm.close()
        print(
            f"virt (fallback, the same kernel and initramfs, 1 GiB): {'READY' if m else 'NOT READY'} "
            f"after {outcome['virt']['seconds']}s" + (f": {m[0]}" if m else f": {outcome['virt']['why']}")
        )
    outcome["machine"] = machine
    if mem:
        outcome["mem"] = mem[0]
    OUTCOME.write_text(json.dumps(outcome, indent=2) + "\n")
    assert m, f"the node never became ready on {machine}:\n" + console[-4000:]
    ready, wanted, ip = int(m[1]), int(m[2]), m[4]
    assert wanted >= 1 and ready == wanted, console[-3000:]
    assert ip != "127.0.0.1", "no address from DHCP"
    assert "always-on node" in console
    assert mem, "no BORGUSB-MEM line"
    total, used = int(mem[1]), int(mem[2])
    print(f"memory after boot on {machine}: {mem[0]}")
    print(f"used {used} MiB of the board's {BOARD_MIB} MiB ({100 * used / BOARD_MIB:.0f} %); limit {MAX_USED_MIB} MiB")
    assert total <= BOARD_MIB
    assert used <= MAX_USED_MIB, f"the node uses {used} MiB: not enough room on a 1 GiB Pi"
    # The node key: made on this first boot, written to the card encrypted.
    assert re.search(r"node key \S+ created \(first boot\), encrypted on the BORGUSB partition", console), console[
        -3000:
    ]
    _, off_data = sd.offsets(card)
    doc = json.loads(sd.read(card, off_data, "node-key.json"))
    assert doc["kind"] == "node" and "ciphertext" in json.dumps(doc)
    assert m[7] and doc["public"]["fingerprint"] == m[7]
    # and every cell signs with it (a systemd credential from RAM)
    assert m[8] == m[7], f"cells sign with {m[8]!r}, not the node key {m[7]}"
