"""`borgusb flash`: the command. Lists, refuses, asks, writes, reads back, checks (see borgusb.flash)."""

from __future__ import annotations

import argparse
import collections
import getpass
import subprocess
import sys
from pathlib import Path

from .. import keystore
from ..clitools import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from ..stick import MAX_FILE, MAX_MARKER, Marker, MarkerError, Network, Wifi
from .check import check_stick
from .decide import Disk, Verdict, judge, size_confirmed, size_text
from .disks import find_disk, list_disks
from .image import ImageError, Source, default_image, open_image, stick_files
from .writer import DeviceBusy, WriteError, write_image

EPILOG = """\
Only disks udev calls USB, SD card or removable are listed; internal disks, the disk this system
runs from and (without --allow-loop) loop devices are refused, each with its reason. A disk with a
mounted partition, or one larger than 256 GB, is written only after you type its size as shown.
The partition table is written last, after the rest was read back and matched: a write that is cut
short leaves a device that nothing takes for a stick (check one with --check DEVICE).

Examples:
  sudo borgusb flash                                  pick the stick from a list
  sudo borgusb flash /dev/sdb --keystore ks.json --join 203.0.113.5:9000
  sudo borgusb flash --desktop                        the desktop stick: the conduit on the PC's own screen
  sudo borgusb flash --pi /dev/mmcblk0                the Pi image; asks for the Wi-Fi network
  sudo borgusb flash --check /dev/sdb                 is it a complete BorgUSB stick?
Exit codes: 0 written and checked; 1 refused or failed (the reason is printed); 2 usage."""


class Stop(Exception):
    """End the command: the message (if any) and the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="borgusb flash",
        description="Write the BorgUSB image onto a USB stick (or, with --pi, the Raspberry Pi image onto an "
        "SD card), read it back and compare SHA-256; optionally put your keystore and settings on it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "device", nargs="?", metavar="DEVICE", help="the whole disk, e.g. /dev/sdb (default: pick from a list)"
    )
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--pi", action="store_true", help="the Raspberry Pi SD card image (./build.sh pi) instead")
    kind.add_argument(
        "--desktop",
        action="store_true",
        help="the desktop stick (./build.sh image --profile desktop): the conduit on the booted PC's own screen",
    )
    p.add_argument(
        "--image", type=Path, metavar="FILE", help="the image file (default: what ./build.sh or ./build.sh pi built)"
    )
    p.add_argument(
        "--list", action="store_true", help="list the disks, which may be written and why not; write nothing"
    )
    p.add_argument("--check", metavar="DEVICE", help="only say whether DEVICE holds a complete BorgUSB stick")
    p.add_argument("--yes", action="store_true", help="do not ask 'yes' before writing (a size to type is still asked)")
    p.add_argument(
        "--allow-loop", action="store_true", help="accept loop devices (files standing in for disks): for tests"
    )
    s = p.add_argument_group("put on the stick's data partition in the same step")
    s.add_argument(
        "--keystore", type=Path, metavar="FILE", help="an existing wallet keystore (encrypted; written as it is)"
    )
    s.add_argument(
        "--marker", type=Path, metavar="FILE", help="a whole marker file (.borgusb JSON) instead of the options below"
    )
    s.add_argument("--join", action="append", default=[], metavar="HOST[:PORT]", help="a contact to join through")
    s.add_argument("--address", metavar="IP/PREFIX", help="a fixed address instead of DHCP, e.g. 10.0.0.5/24")
    s.add_argument("--gateway", metavar="IP", help="the gateway with --address")
    s.add_argument("--always-on", action="store_true", help="pulling the stick does not power the node off")
    s.add_argument("--wifi-ssid", metavar="SSID", help="the Wi-Fi network the Pi joins (--pi asks when not given)")
    s.add_argument("--wifi-psk-file", type=Path, metavar="FILE", help="its passphrase, first line of FILE")
    s.add_argument("--no-wifi", action="store_true", help="with --pi: do not ask for Wi-Fi (wired or USB network)")
    return p


def ask(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:
        raise Stop("no answer (end of input): nothing was written") from None


def wifi_from(args: argparse.Namespace) -> Wifi | None:
    ssid, psk = args.wifi_ssid, None
    if args.wifi_psk_file is not None:
        try:
            text = args.wifi_psk_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise Stop(f"cannot read {args.wifi_psk_file}: {exc.strerror}", EXIT_USAGE) from None
        psk = text.splitlines()[0] if text else ""
    if ssid is None and args.pi and not args.no_wifi:
        if sys.stdin.isatty():
            ssid = ask("Wi-Fi network (SSID) for the Pi; empty for none (Ethernet or USB network): ").strip() or None
        else:
            print("No terminal to ask for Wi-Fi on: the Pi will use Ethernet or a USB network", file=sys.stderr)
    if ssid is None:
        if psk is not None:
            raise Stop("--wifi-psk-file needs --wifi-ssid", EXIT_USAGE)
        return None
    if psk is None:
        if not sys.stdin.isatty():
            raise Stop("--wifi-ssid needs --wifi-psk-file when there is no terminal to ask on", EXIT_USAGE)
        psk = getpass.getpass(f"Passphrase of {ssid!r} (kept on the card's data partition): ")
    return Wifi(ssid, psk)


def marker_from(args: argparse.Namespace) -> bytes | None:
    """The marker to write: --marker as it is (checked), or one from the options, or None (the image's own)."""
    try:
        if args.marker is not None:
            if args.join or args.address or args.gateway or args.always_on or args.wifi_ssid or args.wifi_psk_file:
                raise Stop("--marker is the whole marker: give the other settings in it, not as options", EXIT_USAGE)
            with open(args.marker, "rb") as fh:
                raw = fh.read(MAX_MARKER + 1)
            Marker.parse(raw)  # refuses more than MAX_MARKER bytes, says why
            return raw
        wifi = wifi_from(args)
        if not (args.join or args.address or args.always_on or wifi or args.pi):
            if args.gateway:
                raise Stop("--gateway needs --address", EXIT_USAGE)
            return None
        network = Network(args.address, args.gateway) if args.address else None
        if args.gateway and network is None:
            raise Stop("--gateway needs --address", EXIT_USAGE)
        # the Pi image's own marker is always-on: a node with no one at it
        return Marker(join=tuple(args.join), network=network, always_on=args.always_on or args.pi, wifi=wifi).to_bytes()
    except OSError as exc:
        raise Stop(f"cannot read {args.marker}: {exc.strerror}", EXIT_USAGE) from None
    except MarkerError as exc:
        raise Stop(str(exc), EXIT_USAGE) from None


def keystore_from(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE + 1)
    except OSError as exc:
        raise Stop(f"cannot read the keystore {path}: {exc.strerror}", EXIT_USAGE) from None
    if len(data) > MAX_FILE:
        raise Stop(f"{path} is larger than any keystore", EXIT_USAGE)
    try:
        doc = keystore.parse(data)
    except keystore.KeystoreError as exc:
        raise Stop(f"{path} cannot be put on the stick: {exc}", EXIT_USAGE) from None
    if doc.get("kind") != "wallet":
        raise Stop(f"{path} holds a {doc.get('kind')} key, not a wallet", EXIT_USAGE)
    return data


def show_list(verdicts: list[Verdict]) -> None:
    refused = collections.Counter(r.reason for v in verdicts for r in v.refusals[:1])
    for v in verdicts:
        state = "can be written" if v.ok else f"refused ({v.refusals[0].reason}): {v.refusals[0].why}"
        if v.ok and v.confirm:
            state += f"; type its size to confirm: {v.confirm}"
        print(f"  {v.disk.describe()}\n      {state}")
    counts = " ".join(f"{k}={n}" for k, n in sorted(refused.items())) or "none"
    print(f"{sum(v.ok for v in verdicts)} may be written; refused: {counts}")


def choose(args: argparse.Namespace, image_size: int) -> Verdict:
    if args.device:
        disk = find_disk(args.device)
        if disk is None:
            raise Stop(f"{args.device} is not a whole disk udev knows (give the disk, e.g. /dev/sdb, not a partition)")
        verdict = judge(disk, allow_loop=args.allow_loop, image_size=image_size)
        if not verdict.ok:
            whys = "; ".join(f"{r.why} ({r.reason})" for r in verdict.refusals)
            raise Stop(f"refused to write to {disk.node}: {whys}. Nothing was written")
        return verdict
    verdicts = [judge(d, allow_loop=args.allow_loop, image_size=image_size) for d in list_disks()]
    fit = [v for v in verdicts if v.ok]
    if not fit:
        show_list(verdicts)
        raise Stop("no disk here may be written: plug in a USB stick or an SD card")
    if not sys.stdin.isatty():
        show_list(verdicts)
        raise Stop("name the DEVICE to write (no terminal to choose on)", EXIT_USAGE)
    for i, v in enumerate(fit, 1):
        print(f"  {i}. {v.disk.describe()}" + (f"  [{v.confirm}]" if v.confirm else ""))
    answer = ask(f"Write to which one (1-{len(fit)}; empty: none)? ").strip()
    if not answer.isdigit() or not 1 <= int(answer) <= len(fit):
        raise Stop("nothing chosen: nothing was written", EXIT_OK)
    return fit[int(answer) - 1]


def confirm(verdict: Verdict, yes: bool) -> None:
    disk = verdict.disk
    print(f"Everything on {disk.node} ({disk.describe().split(None, 1)[1].strip()}) will be erased.")
    if verdict.confirm:
        typed = ask(f"Careful: {verdict.confirm}. Type its size as shown ({size_text(disk.size)}) to go on: ")
        if not size_confirmed(typed, disk):
            raise Stop(f"the size typed is not {size_text(disk.size)}: nothing was written")
    elif not yes and ask("Type yes to write: ").strip().lower() != "yes":
        raise Stop("not confirmed: nothing was written", EXIT_OK)


def unmount(disk: Disk) -> Disk:
    """A confirmed disk in use: its partitions unmounted (deepest first); refused if any stays mounted."""
    for point in sorted((p for p in disk.mounted if p != "swap"), key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True)
    again = find_disk(disk.node)
    if again is None or again.mounted:
        still = ", ".join(again.mounted) if again else "?"
        raise Stop(f"{disk.node} is still in use ({still}): close what uses it and try again; nothing was written")
    return again


def write(verdict: Verdict, source: Source) -> None:
    from tqdm import tqdm

    disk = verdict.disk if not verdict.disk.mounted else unmount(verdict.disk)
    with tqdm(total=source.size, unit="B", unit_scale=True, desc="write ", file=sys.stderr) as wbar:
        with tqdm(total=source.size, unit="B", unit_scale=True, desc="verify", file=sys.stderr) as vbar:
            try:
                done = write_image(disk.node, disk.size, source, wbar.update, vbar.update)
            except DeviceBusy as exc:
                raise Stop(str(exc.strerror)) from None
            except KeyboardInterrupt:
                raise Stop(f"interrupted: {disk.node} is not a valid stick; write it again", 130) from None
            except OSError as exc:
                raise Stop(
                    f"writing {disk.node} failed ({exc.strerror or exc}): it is not a valid stick; "
                    "check the disk and write it again"
                ) from None
            except WriteError as exc:
                raise Stop(str(exc)) from None
    rate = done.bytes / max(done.seconds, 1e-6) / 1e6
    print(f"Written and read back: {size_text(done.bytes)} in {done.seconds:.1f} s ({rate:.1f} MB/s)")
    print(f"  SHA-256 of the first MiB: {done.head_sha256}\n  SHA-256 of the rest:      {done.body_sha256}")


def run(args: argparse.Namespace) -> int:
    if args.check:
        result = check_stick(args.check)
        print(result.message)
        return EXIT_OK if result.ok else EXIT_FAIL
    image = args.image or default_image(args.pi, args.desktop)
    if args.list:
        size = image.stat().st_size if image.is_file() else 0
        print(f"Disks for {image} ({size_text(size) if size else 'not built yet: sizes not compared'}):")
        show_list([judge(d, allow_loop=args.allow_loop, image_size=size) for d in list_disks()])
        return EXIT_OK
    files = stick_files(keystore_from(args.keystore), marker_from(args))
    try:
        source = open_image(image, files)
    except ImageError as exc:
        raise Stop(str(exc), EXIT_USAGE) from None
    try:
        verdict = choose(args, source.size)
        confirm(verdict, args.yes)
        if source.added:
            print(f"On the data partition: {', '.join(source.added)}")
        write(verdict, source)
    finally:
        source.close()
    result = check_stick(verdict.disk.node)
    print(result.message)
    if not result.ok:
        return EXIT_FAIL
    if args.pi:
        print("Done. Put the card into the Pi and power it: it joins the network on its own (always-on).")
    else:
        print(
            "Done. Plug it into a running Linux PC and run: sudo sh /media/$USER/BORGUSB/borgusb-hosted --open\n"
            "      (or boot a PC from it: the node runs from RAM)."
        )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except Stop as exc:
        if str(exc):
            print(f"borgusb flash: {exc}", file=sys.stderr)
        return exc.code
