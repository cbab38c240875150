#!/usr/bin/env python3
"""Build the BorgUSB stick image: the one entry point of ./build.sh and the tests.

Steps (each prints its progress and duration):

1. wheels: BorgUSB and its dependencies at the exact versions of
   image/requirements.lock, built/downloaded once into
   ~/.cache/borgusb/image/wheels (pip; generate the lock with --relock);
2. apt sources for the image from this machine's own Debian sources, as a
   mkosi package-manager tree (no mirror is written in the repository, and
   mkosi's default debug-symbols suite, refused by some mirrors, is avoided);
3. mkosi (mkosi.conf, image/, overlay/): a UKI whose initrd is
   the whole OS; package cache and incremental cache under ~/.cache/borgusb;
4. the stick: a GPT disk image with an ESP (the UKI as EFI/BOOT/BOOTX64.EFI)
   and a FAT data partition
   labelled BORGUSB holding the marker file .borgusb (and room for the
   keystore and the hosted-mode bundle), and ai.squashfs: the agents' model,
   llama-cpp-python and the memory search (image/ai_stack.py; --no-ai: without).

Prints the image path, its size, the UKI size and the build duration, and
records them in ~/.cache/borgusb/image/build.json (read by the benchmark).

With --pi (./build.sh pi) the same steps build the Raspberry Pi SD card image
from the same configuration plus the profile image/profiles/pi.conf
(Architecture=arm64; always-on): arm64 wheels at the same pinned versions
(pip download for the aarch64 platform tags) in wheels-arm64/, the apt sources
with the non-free-firmware component (Debian's raspi-firmware), mkosi output
in pi/out/, and step 4 lays mkosi's split kernel and initrd, the Pi firmware
and the boards' device trees, config.txt and cmdline.txt (image/pi/) into the
FAT boot partition of an MBR disk, next to the same BORGUSB data partition:
~/.cache/borgusb/image/borgusb-pi.img, recorded in build-pi.json.
With --desktop (./build.sh image --profile desktop) the stick carries the
profile image/profiles/desktop.conf as well (a kiosk browser draws the conduit
on the booted machine's screen): mkosi output in desktop/out/ with its own image
cache, ~/.cache/borgusb/image/borgusb-desktop.img, recorded in build-desktop.json.
With --parts-only NAME (tests: --profile testhost --parts-only testhost) only
steps 1-3 run, into ~/.cache/borgusb/image/NAME/out (no stick; NAME/build.json).
Usage: image/build_image.py [--pi | --desktop] [--profile NAME] [--parts-only NAME] [--relock] [--cold] [--worktree]
                             [--data-mib N] [--no-ai]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the stick's format and the hosted-mode bundle are BorgUSB's own code

from borgusb.stick import ALWAYS_ON_FILE, KEYSTORE, LABEL, MARKER, Marker  # noqa: E402

sys.path.insert(0, str(ROOT / "image"))
import ai_stack  # noqa: E402
from ai_stack import FILE as AI_FILE  # noqa: E402

CACHE = Path(os.environ.get("BORGUSB_CACHE", Path.home() / ".cache" / "borgusb"))
WORK = CACHE / "image"
WHEELS = WORK / "wheels"
PKGMNGR = WORK / "pkgmngr"
OUT = WORK / "out"
LOCK = ROOT / "image" / "requirements.lock"
IMAGE = WORK / "borgusb-usb.img"
BUILD_INFO = WORK / "build.json"
VENV_PY = ROOT / ".venv" / "bin" / "python"
# The Raspberry Pi SD card image (--pi): its own wheels, sources, output and record.
PI_WHEELS = WORK / "wheels-arm64"
PI_PKGMNGR = WORK / "pkgmngr-pi"
PI_OUT = WORK / "pi" / "out"
PI_IMAGE = WORK / "borgusb-pi.img"
PI_BUILD_INFO = WORK / "build-pi.json"
PI_ASSETS = ROOT / "image" / "pi"
PI_BOOT_LABEL = "BORGBOOT"
PI_BOOT_VOLUME_ID = "B0560E52"
PI_DISK_ID = "0xb0560a64"
# The desktop stick (--desktop: profile desktop, the conduit on the machine's own screen): its
# own mkosi output, image cache (its package set differs) and record, so both sticks stay built.
DESKTOP_OUT = WORK / "desktop" / "out"
DESKTOP_IMAGE = WORK / "borgusb-desktop.img"
DESKTOP_BUILD_INFO = WORK / "build-desktop.json"
# pip's platform tags for the Pi's wheels (Debian bookworm arm64: glibc 2.36).
AARCH64_PLATFORMS = (
    "manylinux2014_aarch64",
    "manylinux_2_17_aarch64",
    "manylinux_2_28_aarch64",
    "manylinux_2_34_aarch64",
)

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
DATA_TYPE = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"  # Microsoft basic data: every OS shows it
DISK_GUID = "8E6A2C55-B0A6-4D7B-9B1E-B0C6B0550001"
ESP_GUID = "8E6A2C55-B0A6-4D7B-9B1E-B0C6B0550002"
DATA_GUID = "8E6A2C55-B0A6-4D7B-9B1E-B0C6B0550003"
ESP_VOLUME_ID = "B0560E51"
DATA_VOLUME_ID = "B0560001"
SECTOR = 512

STARTED = time.monotonic()


def step(text: str) -> None:
    print(f"\n\033[1m==> [{time.monotonic() - STARTED:6.1f}s] {text}\033[0m", flush=True)


def note(text: str) -> None:
    print(f"    {text}", flush=True)


def die(text: str) -> None:
    print(f"\nbuild_image: error: {text}", file=sys.stderr, flush=True)
    sys.exit(1)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, check=True, **kw)
    except FileNotFoundError:
        die(f"{cmd[0]} is not installed (run ./build.sh setup)")
    except subprocess.CalledProcessError as exc:
        die(f"{' '.join(map(str, cmd[:4]))} ... failed with exit code {exc.returncode} (see above)")
    raise AssertionError


def source_date_epoch() -> int:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return int(out.stdout.strip() or 0) or 1700000000


# ------------------------------------------------------------------ 1. wheels


def deps_sha() -> str:
    """Hash of pyproject's runtime dependencies: the lock is redone when they change."""
    import hashlib
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return hashlib.sha256("\n".join(sorted(deps)).encode()).hexdigest()[:16]


def lock_is_current() -> bool:
    return LOCK.exists() and f"# pyproject-dependencies: {deps_sha()}" in LOCK.read_text()


def relock() -> None:
    step("Resolving exact versions of BorgUSB's dependencies into image/requirements.lock")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        run(
            [
                str(VENV_PY),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--dry-run",
                "--ignore-installed",
                "--report",
                str(report),
                str(ROOT),
            ],
            cwd=tmp,
            stderr=subprocess.DEVNULL,
        )
        items = json.loads(report.read_text())["install"]
    pins = sorted(
        f"{i['metadata']['name'].lower()}=={i['metadata']['version']}"
        for i in items
        if i["metadata"]["name"].lower() != "borgusb"
    )
    pip_version = subprocess.run(
        [str(VENV_PY), "-m", "pip", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    LOCK.write_text(
        "# Exact versions installed into the USB image (pip --no-index from the wheel cache).\n"
        "# Regenerate: image/build_image.py --relock (automatic when pyproject's dependencies change)\n"
        f"# pyproject-dependencies: {deps_sha()}\n" + "".join(p + "\n" for p in pins) + f"pip=={pip_version}\n"
    )
    note(f"{len(pins)} packages pinned")


def build_wheels(worktree: bool = False, wheels: Path = WHEELS, platforms: tuple[str, ...] = ()) -> None:
    """The wheels at the lock's exact versions; with platforms (the Pi), binary wheels for those tags."""
    step("Wheels for the image (BorgUSB + pinned dependencies)" + (f" for {platforms[0]}" if platforms else ""))
    if not lock_is_current():
        relock()
    WHEELS = wheels  # noqa: N806 - the same steps for either architecture's wheel directory
    WHEELS.mkdir(parents=True, exist_ok=True)
    stamp = WHEELS / ".lock-sha"
    lock_text = LOCK.read_text()
    import hashlib

    want = hashlib.sha256((lock_text + " ".join(platforms)).encode()).hexdigest()
    if not stamp.exists() or stamp.read_text() != want:
        for old in WHEELS.glob("*.whl"):
            old.unlink()
        pins = [line for line in lock_text.splitlines() if line and not line.startswith("#")]
        note(f"downloading/building {len(pins)} wheels into {WHEELS}")
        if platforms:  # another architecture: registry wheels only, nothing is compiled here
            run(
                [
                    str(VENV_PY),
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    *[a for p in platforms for a in ("--platform", p)],
                    "--python-version",
                    "3.11",
                    "--implementation",
                    "cp",
                    "-d",
                    str(WHEELS),
                    *pins,
                ]
            )
        else:
            run(
                [
                    str(VENV_PY),
                    "-m",
                    "pip",
                    "wheel",
                    "--quiet",
                    "--no-deps",
                    "--prefer-binary",
                    "-w",
                    str(WHEELS),
                    *pins,
                ]
            )
        stamp.write_text(want)
    else:
        note(f"dependency wheels cached ({len(list(WHEELS.glob('*.whl')))} files in {WHEELS})")
    # BorgUSB itself from the committed tree (git HEAD: same commit, same image; edits in
    # progress elsewhere in the checkout stay out), or the working tree with --worktree.
    for old in WHEELS.glob("borgusb-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        if worktree or not (ROOT / ".git").exists():
            for name in ("pyproject.toml", "README.md"):
                shutil.copy2(ROOT / name, src / name)
            shutil.copytree(ROOT / "borgusb", src / "borgusb", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            note("BorgUSB from the working tree")
        else:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", "HEAD", "pyproject.toml", "README.md", "borgusb"],
                capture_output=True,
                check=True,
            ).stdout
            run(["tar", "-x", "-C", str(src)], input=archive)
            rev = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
            ).stdout.strip()
            note(f"BorgUSB from git HEAD {rev}")
        run(
            [str(VENV_PY), "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(WHEELS), str(src)],
            env={**os.environ, "SOURCE_DATE_EPOCH": str(source_date_epoch())},
        )
    wheel = next(WHEELS.glob("borgusb-*.whl"))
    (WHEELS / "borgusb.version").write_text(wheel.name.split("-")[1])
    shutil.copy2(LOCK, WHEELS / "requirements.lock")
    note(f"{wheel.name} built")


# ------------------------------------------------------------------ 2. apt sources


def host_debian_sources() -> list[dict[str, str]]:
    """The machine's Debian entries (deb822 and one-line), Debian suites only, no backports."""
    entries: list[dict[str, str]] = []
    apt = Path("/etc/apt")
    for f in sorted([apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]):
        if not f.is_file():
            continue
        for line in f.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
            if len(words) >= 4 and words[0] == "deb":
                entries.append({"URIs": words[1], "Suites": words[2], "Components": " ".join(words[3:])})
    for f in sorted((apt / "sources.list.d").glob("*.sources")):
        for block in re.split(r"\n\s*\n", f.read_text()):
            fields: dict[str, str] = {}
            for line in block.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip()] = value.strip()
            if fields.get("Enabled", "yes").lower() == "no" or "deb" not in fields.get("Types", "").split():
                continue
            if fields.get("URIs") and fields.get("Suites"):
                entries.append({k: fields[k] for k in ("URIs", "Suites", "Components") if k in fields})
    keep = []
    for e in entries:
        suites = [s for s in e["Suites"].split() if re.fullmatch(r"bookworm(-updates|-security|/updates)?", s)]
        if suites:
            keep.append({**e, "Suites": " ".join(suites)})
    return keep


def write_pkgmngr(PKGMNGR: Path = PKGMNGR, components: str = "main") -> None:  # noqa: N803
    step(
        "Apt sources for the image from this machine's Debian sources"
        + (f" ({components})" if components != "main" else "")
    )
    entries = host_debian_sources()
    if not any("bookworm" in e["Suites"].split() for e in entries):
        die("no Debian bookworm entry in /etc/apt/sources.list{,.d}: cannot tell which mirror to use")
    target = PKGMNGR / "etc/apt/sources.list.d"
    if PKGMNGR.exists():
        shutil.rmtree(PKGMNGR)
    target.mkdir(parents=True)
    text = "\n".join(
        "Types: deb\n"
        f"URIs: {e['URIs']}\nSuites: {e['Suites']}\nComponents: {components}\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        for e in entries
    )
    (target / "mkosi.sources").write_text(text)
    for e in entries:
        note(f"{e['URIs']} {e['Suites']}")


# ------------------------------------------------------------------ 3. mkosi


def record_build(path: Path, info: dict) -> None:
    """Append this build to the history in `path` (the last 20, and always the newest cold
    build: the image benchmark cites it)."""
    history: list[dict] = []
    if path.exists():
        try:
            history = json.loads(path.read_text()).get("history", [])
        except ValueError:
            history = []
    history.append(info)
    kept = history[-20:]
    cold = [h for h in history if h.get("cold")]
    if cold and cold[-1] not in kept:
        kept = [cold[-1]] + kept[1:]
    path.write_text(json.dumps({**info, "history": kept}, indent=2) + "\n")


def run_mkosi(
    profiles: list[str],
    cold: bool,
    OUT: Path = OUT,
    wheels: Path = WHEELS,  # noqa: N803
    pkgmngr: Path = PKGMNGR,
    cache: Path = WORK / "mkosi-cache",
) -> None:
    step("mkosi: the OS as the initrd of a unified kernel image" + (" (cold: caches cleared)" if cold else ""))
    for d in (cache, WORK / "packages", WORK / "workspace"):
        d.mkdir(parents=True, exist_ok=True)
    if cold:
        for d in (cache, WORK / "packages"):
            shutil.rmtree(d)
            d.mkdir()
    OUT.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mkosi",
        "--force",
        "--incremental",
        "--output-dir",
        str(OUT),
        "--cache-dir",
        str(cache),
        "--package-cache-dir",
        str(WORK / "packages"),
        "--workspace-dir",
        str(WORK / "workspace"),
        "--package-manager-tree",
        str(pkgmngr),
        "--build-sources",
        f"{ROOT}:,{wheels}:wheels",
        "--source-date-epoch",
        str(source_date_epoch()),
    ]
    for p in profiles:
        conf = ROOT / "image" / "profiles" / f"{p}.conf"
        if not conf.exists():
            die(f"no profile {p} (image/profiles/{p}.conf)")
        cmd += ["--include", str(conf)]
    cmd.append("build")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if "System has not been booted with systemd" in line or "Failed to connect to bus" in line:
            continue  # the host's PID 1 is not systemd: harmless
        print(f"    mkosi [{time.monotonic() - t0:5.0f}s] {line}", flush=True)
    if proc.wait() != 0:
        die(f"mkosi failed with exit code {proc.returncode} (see above)")


# ------------------------------------------------------------------ 4. the stick


def partitions(image: Path) -> list[dict]:
    out = run(["sfdisk", "--json", str(image)], capture_output=True, text=True).stdout
    return json.loads(out)["partitiontable"]["partitions"]


def assemble(data_mib: int, ai: Path | None = None, out: Path = OUT, image: Path = IMAGE) -> dict:
    """The stick; the data partition grows by the AI stack's size (`ai`, image/ai_stack.py) if given."""
    if ai is not None:
        data_mib += -(-ai.stat().st_size // 2**20) + 4  # whole MiB, and room for FAT's own tables
    step(f"The stick: GPT with an ESP holding the UKI and a {data_mib} MiB data partition labelled {LABEL}")
    uki = out / "borgusb.efi"
    if not uki.exists():
        die(f"mkosi did not produce {uki}")
    esp_mib = uki.stat().st_size // 2**20 + 16  # the UKI plus slack, whole MiB
    start1 = 2048
    esp_sectors = esp_mib * 2048
    start2 = start1 + esp_sectors
    data_sectors = data_mib * 2048
    total = (start2 + data_sectors + 2048) * SECTOR
    tmp = image.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as fh:
        fh.truncate(total)
    layout = (
        f"label: gpt\nlabel-id: {DISK_GUID}\nunit: sectors\nfirst-lba: 2048\n"
        f'start={start1}, size={esp_sectors}, type={ESP_TYPE}, uuid={ESP_GUID}, name="ESP"\n'
        f'start={start2}, size={data_sectors}, type={DATA_TYPE}, uuid={DATA_GUID}, name="{LABEL}"\n'
    )
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(tmp)], input=layout, text=True)
    epoch = source_date_epoch()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    run(
        [
            "mkfs.vfat",
            "-F",
            "32",
            "-s",
            "1",
            "-n",
            "ESP",
            "-i",
            ESP_VOLUME_ID,
            f"--offset={start1}",
            str(tmp),
            str(esp_sectors // 2),
        ],
        **quiet,
    )
    run(
        [
            "mkfs.vfat",
            "-F",
            "32",
            "-s",
            "1",
            "-n",
            LABEL,
            "-i",
            DATA_VOLUME_ID,
            f"--offset={start2}",
            str(tmp),
            str(data_sectors // 2),
        ],
        **quiet,
    )
    with tempfile.TemporaryDirectory() as d:
        efi = Path(d) / "EFI"
        (efi / "BOOT").mkdir(parents=True)
        shutil.copyfile(uki, efi / "BOOT" / "BOOTX64.EFI")
        marker = Path(d) / MARKER
        marker.write_bytes(Marker().to_bytes())
        readme = Path(d) / "README.TXT"
        readme.write_text(
            "BorgUSB data partition.\r\n"
            f"{KEYSTORE:<14} your encrypted wallet (borgusb wallet new --keystore .../{KEYSTORE})\r\n"
            f"{MARKER:<14} marker and settings (JSON: join contacts, network, always_on)\r\n"
            f"{ALWAYS_ON_FILE:<14} if present, pulling the stick does not power the node off\r\n"
            + (f"{AI_FILE:<14} the agents' model and the memory search (read-only, mounted at boot)\r\n" if ai else "")
        )
        for f in (efi, efi / "BOOT", efi / "BOOT" / "BOOTX64.EFI", marker, readme):
            os.utime(f, (epoch, epoch))
        mtools(tmp, start1, ["mcopy", "-s", "-m", str(efi), "::/"])
        mtools(tmp, start2, ["mcopy", "-m", str(marker), str(readme), "::/"])
        if ai is not None:
            os.utime(ai, (epoch, epoch))
            mtools(tmp, start2, ["mcopy", "-m", str(ai), f"::/{AI_FILE}"])
        # Hosted mode from the stick itself (borgusb/hosted/bundle.py): the launcher, BorgUSB with every
        # dependency unpacked for the host's python3, and hosted/boot.py carrying the sha256 of each of those
        # files, recorded here: the host runs only a copy in RAM that matches them (bootstrap.py).
        from borgusb.hosted.bundle import build as build_bundle
        from borgusb.hosted.bundle import manifest

        bundle = Path(d) / "bundle"
        site = build_bundle(WHEELS, bundle)
        for f in (bundle / "borgusb-hosted", *bundle.rglob("*")):
            os.utime(f, (epoch, epoch), follow_symlinks=False)
        mtools(tmp, start2, ["mcopy", "-s", "-m", str(bundle / "borgusb-hosted"), str(bundle / "hosted"), "::/"])
        recorded = len(manifest(bundle / "hosted"))
        note(f"hosted-mode bundle on the data partition: borgusb-hosted + hosted/{site.name} ({recorded} files hashed)")
    tmp.rename(image)
    return {
        "esp_start": start1,
        "esp_sectors": esp_sectors,
        "data_start": start2,
        "data_sectors": data_sectors,
        "ai_bytes": ai.stat().st_size if ai else 0,
    }


def build_ai() -> Path:
    """The AI stack's squashfs for the data partition (image/ai_stack.py)."""
    step("The AI stack (llama-cpp-python, SmolLM2-135M-Instruct, the memory search) as one squashfs for the stick")
    (WORK / "ai").mkdir(parents=True, exist_ok=True)
    try:
        return ai_stack.build(WORK / "ai", CACHE / "wheels", LOCK, VENV_PY, source_date_epoch(), note)
    except LookupError as exc:
        die(f"{exc} (or build with --no-ai)")
    except subprocess.CalledProcessError as exc:
        die(f"{' '.join(map(str, exc.cmd[:4]))} ... failed with exit code {exc.returncode} (see above)")
    raise AssertionError


# ------------------------------------------------------------------ 4'. the Pi SD card

# Kernel command line words of the stick's UKI that mean nothing (or the wrong
# thing) on a Pi; the Pi's consoles come from image/pi/cmdline.txt instead.
X86_ONLY = ("console=", "vsyscall=", "pti=", "mce=")


def pe_section(path: Path, name: str) -> bytes:
    """One section of a PE file (the UKI's .cmdline), without a PE library."""
    import struct

    data = path.read_bytes()
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if data[pe : pe + 4] != b"PE\0\0":
        die(f"{path} is not a PE file")
    count, opt_size = struct.unpack_from("<H", data, pe + 6)[0], struct.unpack_from("<H", data, pe + 20)[0]
    table = pe + 24 + opt_size
    for i in range(count):
        off = table + 40 * i
        sname = data[off : off + 8].rstrip(b"\0").decode()
        vsize, _, rsize, raddr = struct.unpack_from("<IIII", data, off + 8)
        if sname == name:
            return data[raddr : raddr + min(vsize, rsize)]
    die(f"{path} has no {name} section")
    raise AssertionError


def pi_cmdline(uki: Path) -> str:
    """The UKI's own command line (mkosi.conf, drop-ins, profiles) with the Pi's consoles."""
    words = pe_section(uki, ".cmdline").rstrip(b"\0").decode().split()
    words = [w for w in words if not w.startswith(X86_ONLY)]
    template = (PI_ASSETS / "cmdline.txt").read_text()
    lines = [line for line in template.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return " ".join([*" ".join(lines).replace("@CMDLINE@", " ".join(words)).split()]) + "\n"


def pi_config(kernel: str, initrd: str, dtbs: list[str]) -> str:
    text = (PI_ASSETS / "config.txt").read_text().replace("@KERNEL@", kernel).replace("@INITRD@", initrd)
    lines = []
    for line in text.splitlines():
        if line.startswith("device_tree=") and line.split("=", 1)[1] not in dtbs:
            line = f"# {line}  (not in this kernel: the board is not supported by this image)"
        lines.append(line)
    return "\n".join(lines) + "\n"


# The boards this image supports and the device tree the firmware loads for each
# (config.txt names them per board; upstream_kernel=1 picks the same ones).
PI_BOARDS = {
    "Raspberry Pi 3 Model B": "bcm2837-rpi-3-b.dtb",
    "Raspberry Pi 3 Model B+": "bcm2837-rpi-3-b-plus.dtb",
    "Raspberry Pi 4 Model B": "bcm2711-rpi-4-b.dtb",
    "Raspberry Pi 5": "bcm2712-rpi-5-b.dtb",
    "Raspberry Pi Zero 2 W": "bcm2837-rpi-zero-2-w.dtb",
}


def assemble_pi(data_mib: int) -> dict:
    step(
        f"The SD card: MBR with a FAT boot partition (Pi firmware, kernel, initrd, device trees) and a "
        f"{data_mib} MiB data partition labelled {LABEL}"
    )
    kernel, initrd, uki = PI_OUT / "borgusb.vmlinuz", PI_OUT / "borgusb.initrd", PI_OUT / "borgusb.efi"
    boot = PI_OUT / "pi-boot"
    for f in (kernel, initrd, uki, boot / "firmware", boot / "dtbs"):
        if not f.exists():
            die(f"mkosi did not produce {f} (image/profiles/pi.conf, image/pi/mkosi.finalize)")
    dtbs = sorted(p.name for p in (boot / "dtbs").glob("*.dtb"))
    missing = [f"{b} ({d})" for b, d in PI_BOARDS.items() if d not in dtbs]
    if missing:
        note("no device tree in this kernel for: " + ", ".join(missing))
    firmware = sorted(p for p in (boot / "firmware").iterdir() if p.is_file())
    payload = sum(p.stat().st_size for p in [kernel, initrd, *firmware, *(boot / "dtbs").glob("*.dtb")])
    boot_mib = payload // 2**20 + 32  # the files plus slack, whole MiB (a new kernel fits)
    start1 = 8192  # 4 MiB: erase-block aligned, as SD cards like
    boot_sectors = boot_mib * 2048
    start2 = start1 + boot_sectors
    data_sectors = data_mib * 2048
    total = (start2 + data_sectors) * SECTOR
    tmp = PI_IMAGE.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as fh:
        fh.truncate(total)
    # MBR (the Pi boot ROM reads only MBR): 0x0c = FAT32 LBA, the first one bootable.
    layout = (
        f"label: dos\nlabel-id: {PI_DISK_ID}\nunit: sectors\n"
        f"start={start1}, size={boot_sectors}, type=c, bootable\n"
        f"start={start2}, size={data_sectors}, type=c\n"
    )
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(tmp)], input=layout, text=True)
    epoch = source_date_epoch()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    run(
        [
            "mkfs.vfat",
            "-F",
            "32",
            "-s",
            "1",
            "-n",
            PI_BOOT_LABEL,
            "-i",
            PI_BOOT_VOLUME_ID,
            f"--offset={start1}",
            str(tmp),
            str(boot_sectors // 2),
        ],
        **quiet,
    )
    run(
        [
            "mkfs.vfat",
            "-F",
            "32",
            "-s",
            "1",
            "-n",
            LABEL,
            "-i",
            DATA_VOLUME_ID,
            f"--offset={start2}",
            str(tmp),
            str(data_sectors // 2),
        ],
        **quiet,
    )
    with tempfile.TemporaryDirectory() as d:
        files = Path(d) / "boot"
        files.mkdir()
        for f in firmware:
            shutil.copyfile(f, files / f.name)
        for f in (boot / "dtbs").glob("*.dtb"):
            shutil.copyfile(f, files / f.name)
        shutil.copyfile(kernel, files / "vmlinuz")
        shutil.copyfile(initrd, files / "initrd.zst")
        (files / "config.txt").write_text(pi_config("vmlinuz", "initrd.zst", dtbs))
        (files / "cmdline.txt").write_text(pi_cmdline(uki))
        marker = Path(d) / MARKER
        marker.write_bytes(Marker(always_on=True).to_bytes())
        readme = Path(d) / "README.TXT"
        readme.write_text(
            "BorgUSB data partition (Raspberry Pi node).\r\n"
            "node-key.json  this node's key, encrypted (made on first boot; see the README)\r\n"
            "node-key.secret  the random half of its passphrase (the other half is the board's serial)\r\n"
            f"{KEYSTORE:<14} optional: a person's encrypted wallet\r\n"
            f"{MARKER:<14} marker and settings (JSON: join contacts, network)\r\n"
        )
        for f in [*files.iterdir(), files, marker, readme]:
            os.utime(f, (epoch, epoch))
        mtools(tmp, start1, ["mcopy", "-m", *sorted(str(f) for f in files.iterdir()), "::/"])
        mtools(tmp, start2, ["mcopy", "-m", str(marker), str(readme), "::/"])
    tmp.rename(PI_IMAGE)
    return {
        "boot_start": start1,
        "boot_sectors": boot_sectors,
        "data_start": start2,
        "data_sectors": data_sectors,
        "dtbs": dtbs,
        "boards_without_dtb": missing,
        "kernel_bytes": kernel.stat().st_size,
        "initrd_bytes": initrd.stat().st_size,
    }


def mtools(image: Path, start_sector: int, cmd: list[str]) -> None:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    cmd = [cmd[0], "-i", f"{image}@@{start_sector * SECTOR}", *cmd[1:]]
    run(cmd, env=env)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", action="append", default=[], help="image/profiles/NAME.conf (repeatable)")
    ap.add_argument("--relock", action="store_true", help="re-resolve image/requirements.lock first")
    ap.add_argument("--cold", action="store_true", help="clear mkosi's package and image caches first")
    ap.add_argument("--worktree", action="store_true", help="ship BorgUSB from the working tree, not git HEAD")
    ap.add_argument("--data-mib", type=int, default=256, help="size of the BORGUSB data partition (MiB)")
    ap.add_argument(
        "--no-ai", action="store_true", help="leave the AI stack (ai.squashfs: model, llama.cpp, search) off the stick"
    )
    ap.add_argument(
        "--extra-wheel",
        action="append",
        default=[],
        type=Path,
        metavar="WHEEL",
        help="also install this wheel (a cell type shipped outside BorgUSB; its dependencies must "
        "be among the image's); repeatable",
    )
    ap.add_argument(
        "--desktop",
        action="store_true",
        help="the desktop stick: the conduit full screen on the booted machine's display (profile desktop)",
    )
    ap.add_argument("--pi", action="store_true", help="the Raspberry Pi SD card image (arm64; profiles pi, alwayson)")
    ap.add_argument(
        "--parts-only",
        metavar="NAME",
        help="only mkosi's output (UKI, kernel, initrd) into ~/.cache/borgusb/image/NAME/out, no stick "
        "(test images: --profile testhost --parts-only testhost)",
    )
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        die("building the image needs root (mkosi)")
    WORK.mkdir(parents=True, exist_ok=True)
    if args.relock:
        relock()
    if args.pi:
        return main_pi(args)
    if args.parts_only:
        return main_parts(args)
    out, image, build_info, cache = OUT, IMAGE, BUILD_INFO, WORK / "mkosi-cache"
    if args.desktop or "desktop" in args.profile:
        args.profile = ["desktop", *[p for p in args.profile if p != "desktop"]]
        out, image, build_info, cache = DESKTOP_OUT, DESKTOP_IMAGE, DESKTOP_BUILD_INFO, WORK / "desktop" / "mkosi-cache"
    build_wheels(args.worktree)
    stage_extra_wheels(args.extra_wheel)
    write_pkgmngr()
    run_mkosi(args.profile, args.cold, out, cache=cache)
    ai = None if args.no_ai else build_ai()
    layout = assemble(args.data_mib, ai, out, image)
    uki = out / "borgusb.efi"
    duration = time.monotonic() - STARTED
    info = {
        "image": str(image),
        "image_bytes": image.stat().st_size,
        "uki": str(uki),
        "uki_bytes": uki.stat().st_size if uki.exists() else None,
        "duration_s": round(duration, 1),
        "cold": args.cold,
        "profiles": args.profile,
        "finished": int(time.time()),
        **layout,
    }
    record_build(build_info, info)
    step("The USB image is built" + (" (desktop)" if out == DESKTOP_OUT else ""))
    note(
        f"image:    {image}  ({info['image_bytes'] / 2**20:.0f} MiB: ESP + {layout['data_sectors'] // 2048} MiB "
        f"{LABEL} partition, of which {info['ai_bytes'] / 2**20:.0f} MiB {AI_FILE})"
    )
    if info["uki_bytes"]:
        note(f"UKI:      {uki}  ({info['uki_bytes'] / 1e6:.1f} MB, the whole OS)")
    note(f"duration: {duration:.0f} s")
    note("write it: sudo .venv/bin/borgusb flash   (lists the USB sticks; docs/flash.md)")
    return 0


def stage_extra_wheels(extra: list[Path], wheels: Path = WHEELS) -> None:
    """Wheels installed after BorgUSB (image/mkosi.postinst.chroot reads extra.txt); none by default,
    so a later build without --extra-wheel leaves them out again."""
    staged = wheels / "extra"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for wheel in extra:
        if not wheel.is_file() or wheel.suffix != ".whl":
            die(f"--extra-wheel {wheel}: not a wheel file")
        shutil.copy2(wheel, staged / wheel.name)
    (wheels / "extra.txt").write_text("".join(f"{w.name}\n" for w in extra))
    if extra:
        note(f"extra wheels: {', '.join(w.name for w in extra)}")


def main_parts(args: argparse.Namespace) -> int:
    """A test image that is not a stick (the testhost "host PC"): kernel, initrd, UKI and its command line."""
    if not re.fullmatch(r"[a-z0-9-]+", args.parts_only) or args.parts_only in ("out", "pi", "wheels"):
        die(f"--parts-only {args.parts_only}: use a plain name of its own")
    base = WORK / args.parts_only
    out = base / "out"
    build_wheels(args.worktree)
    stage_extra_wheels(args.extra_wheel)
    write_pkgmngr()
    run_mkosi(args.profile, args.cold, out)
    uki, vmlinuz, initrd = out / "borgusb.efi", out / "borgusb.vmlinuz", out / "borgusb.initrd"
    for f in (uki, vmlinuz, initrd):
        if not f.exists():
            die(f"mkosi did not produce {f}")
    info = {
        "uki": str(uki),
        "vmlinuz": str(vmlinuz),
        "initrd": str(initrd),
        "cmdline": pe_section(uki, ".cmdline").rstrip(b"\0").decode().strip(),
        "profiles": args.profile,
        "duration_s": round(time.monotonic() - STARTED, 1),
        "finished": int(time.time()),
    }
    (base / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    step(f"{args.parts_only}: kernel, initrd and UKI built (no stick)")
    note(f"out:      {out}  (initrd {initrd.stat().st_size / 1e6:.1f} MB)")
    note(f"duration: {info['duration_s']:.0f} s")
    return 0


def check_binfmt() -> None:
    """mkosi runs the arm64 package scripts through qemu-user-static and binfmt_misc."""
    handler = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not handler.exists() or "enabled" not in handler.read_text():
        die(
            "no binfmt_misc handler for arm64 programs (qemu-aarch64): run ./build.sh pi, which installs "
            "qemu-user-static and registers it (systemd-binfmt)"
        )


def main_pi(args: argparse.Namespace) -> int:
    check_binfmt()
    profiles = ["pi", "alwayson", *[p for p in args.profile if p not in ("pi", "alwayson")]]
    build_wheels(args.worktree, PI_WHEELS, AARCH64_PLATFORMS)
    write_pkgmngr(PI_PKGMNGR, "main non-free-firmware")
    PI_OUT.mkdir(parents=True, exist_ok=True)
    run_mkosi(profiles, args.cold, PI_OUT, PI_WHEELS, PI_PKGMNGR)
    layout = assemble_pi(args.data_mib)
    duration = time.monotonic() - STARTED
    info = {
        "image": str(PI_IMAGE),
        "image_bytes": PI_IMAGE.stat().st_size,
        "duration_s": round(duration, 1),
        "cold": args.cold,
        "profiles": profiles,
        "finished": int(time.time()),
        "out": str(PI_OUT),
        **layout,
    }
    record_build(PI_BUILD_INFO, info)
    step("The Raspberry Pi SD card image is built")
    note(f"image:    {PI_IMAGE}  ({info['image_bytes'] / 2**20:.0f} MiB: boot + {args.data_mib} MiB {LABEL})")
    note(
        f"kernel:   {layout['kernel_bytes'] / 1e6:.1f} MB, initrd (the whole OS): {layout['initrd_bytes'] / 1e6:.1f} MB"
    )
    note(f"boards:   {', '.join(b for b, d in PI_BOARDS.items() if d in layout['dtbs'])}")
    note(f"duration: {duration:.0f} s")
    note("write it: sudo .venv/bin/borgusb flash --pi   (lists the SD cards, asks for Wi-Fi; docs/flash.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
