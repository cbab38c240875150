"""The stick is self-sufficient: the bundle on its data partition runs with the host's own python3, no pip,
and root runs only a copy in RAM whose every file matches the hashes the build recorded."""

from __future__ import annotations

import ast
import hashlib
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from runtime import ROOT, WHEELS, current_wheels, host_python
from test_hosted import answers, free_port, wallet_keystore

from borgusb.stick import BOOT, LAUNCHER, MARKER, Marker

SITE = "hosted/site-cp311"


@pytest.fixture(scope="module")
def python3() -> str:
    found = host_python()
    if found is None:
        pytest.skip("no python3.11 on this host for the cp311 bundle")
    return found


def make_bundle(tmp_path: Path) -> Path:
    """A stick's data partition as the desktop mounted it, with the bundle, a marker and a wallet."""
    current_wheels()
    from borgusb.hosted.bundle import build

    stick = tmp_path / "BORGUSB"
    stick.mkdir()
    build(WHEELS, stick, borgusb_src=ROOT / "borgusb")
    (stick / MARKER).write_bytes(Marker().to_bytes())
    return stick


def recorded(stick: Path) -> dict[str, str]:
    """The manifest boot.py carries (parsed, not run)."""
    for node in ast.parse((stick / BOOT).read_text()).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "MANIFEST":
            return ast.literal_eval(node.value)
    raise AssertionError("boot.py has no MANIFEST")


class Launcher:
    """`sudo sh /media/…/BORGUSB/borgusb-hosted` with the host's python3, its output collected."""

    def __init__(self, stick: Path, python3: str, *args: str) -> None:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHON": python3, "LANG": "C.UTF-8"}
        self.proc = subprocess.Popen(
            ["sh", str(stick / LAUNCHER), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        threading.Thread(target=lambda: self.lines.extend(iter(stdout.readline, "")), daemon=True).start()

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while not (m := re.search(pattern, self.text())):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.text()
            time.sleep(0.05)
        return m

    def stop(self) -> None:
        """SIGTERM (the watcher removes its RAM copy), SIGKILL if it does not stop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def copies() -> set[str]:
    """The checked copies' directories in /run (bootstrap.py makes one per launch)."""
    return {n for n in os.listdir("/run") if n.startswith("borgusb-hosted-code-")}


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    parents = [pid]
    while parents:
        out = subprocess.run(["pgrep", "-P", ",".join(map(str, parents))], capture_output=True, text=True)
        parents = [int(p) for p in out.stdout.split()]
        found += parents
    return found


def test_launcher_on_the_stick_runs_a_checked_ram_copy(tmp_path, python3, udevd):
    stick = make_bundle(tmp_path)
    ks, address = wallet_keystore(tmp_path)
    (stick / "keystore.json").write_bytes(ks)
    canary = tmp_path / "sitecustomize-ran"
    for name in ("sitecustomize.py", "zz-borgusb.pth"):  # not in the manifest: never copied, never run
        (stick / SITE / name).write_text(f"import pathlib; pathlib.Path({str(canary)!r}).touch()\n")
    for f in stick.rglob("*"):  # the stick is read-only for Python
        f.chmod(f.stat().st_mode & ~0o222)
    port = free_port()
    run = Launcher(stick, python3, "--port", str(port), "--node-ip", "127.66.0.1", "--cells", "peerTreeNet")
    try:
        code = Path(run.wait_for(r"copied into RAM at (\S+) and checked", 60).group(1))
        run.wait_for(r"BORGUSB-HOSTED-READY", 60)
        run.wait_for(r"BORGUSB-READY cell=peerTreeNet", 60)  # the cell host has loaded the cells' code
        watcher = run.proc.pid  # sh execs python3 (boot.py), which execs the watcher: one pid
        # the watcher (root) runs from the copy: its import path, its working directory
        environ = dict(kv.split("=", 1) for kv in Path(f"/proc/{watcher}/environ").read_text().split("\0") if "=" in kv)
        assert environ["PYTHONPATH"] == f"{code}/site-cp311", environ
        assert os.readlink(f"/proc/{watcher}/cwd") == str(code)
        # the copy: a read-only tmpfs of its own, owned by root, every file as the build recorded, no other
        mount = [line.split() for line in Path(f"/proc/{watcher}/mountinfo").read_text().splitlines()]
        found = [m for m in mount if m[4] == str(code)]
        assert found and found[-1][5].startswith("ro,") and found[-1][found[-1].index("-") + 1] == "tmpfs", found
        inside = Path(f"/proc/{watcher}/root") / str(code).lstrip("/")  # the watcher's mount namespace
        files = {p.relative_to(inside).as_posix(): p for p in inside.rglob("*") if p.is_file()}
        manifest = recorded(stick)
        assert set(files) == set(manifest)
        for name, path in files.items():
            st = path.stat()
            assert (st.st_uid, st.st_mode & 0o777) == (0, 0o644), name
            assert hashlib.sha256(path.read_bytes()).hexdigest() == manifest[name], name
        assert not canary.exists(), "a file the build did not record was run"
        # nothing the watcher or its children map or hold open comes from the stick; the bundle's compiled
        # libraries they run are the copy's (maps name them from the copy's own root: "/site-cp311/...")
        major, minor = (int(n) for n in found[-1][2].split(":"))
        copy_dev = f"{major:02x}:{minor:02x}"
        for pid in [watcher, *descendants(watcher)]:
            maps = [line.split() for line in Path(f"/proc/{pid}/maps").read_text().splitlines()]
            assert not [m for m in maps if str(stick) in m[-1]], pid
            bundled = {m[3] for m in maps if "site-cp311/" in m[-1]}
            assert bundled == {copy_dev}, (pid, bundled, copy_dev)
            held = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            assert not [h for h in held if h.startswith(str(stick))], (pid, held)
        # the conduit reads the wallet the watcher copied from the stick
        assert re.search(rf"BORGUSB-HOSTED-READY .*identity={address}", run.text())
        # pull the stick: the directory disappears
        for f in stick.rglob("*"):
            f.chmod(f.stat().st_mode | 0o200)
        t = time.monotonic()
        stick.rename(tmp_path / "pulled")
        while answers(port) and time.monotonic() - t < 5:
            time.sleep(0.02)
        gone = time.monotonic() - t
        print(f"\nbundle: directory gone -> conduit stopped in {gone * 1000:.0f} ms")
        assert gone < 2.0, run.text()
        assert run.proc.wait(timeout=30) == 0, run.text()  # its cells stopped first
        assert not code.exists(), "the RAM copy was left behind"
        assert not list((tmp_path / "pulled").rglob("__pycache__")), "bytecode was written"
        assert (tmp_path / "pulled" / "keystore.json").read_bytes() == ks
    finally:
        run.stop()


@pytest.mark.parametrize("change", ["modified", "missing"])
def test_a_tampered_bundle_is_refused_before_anything_runs(tmp_path, python3, change):
    stick = make_bundle(tmp_path)
    canary = tmp_path / "tampered-code-ran"
    target = stick / SITE / "borgusb" / "hosted" / "__init__.py"  # run by any `python3 -m borgusb.hosted`
    if change == "modified":
        target.write_text(target.read_text() + f"\nimport pathlib\npathlib.Path({str(canary)!r}).touch()\n")
        expect = r"refused: hosted/site-cp311/borgusb/hosted/__init__\.py on the stick differs from the file the image"
    else:
        target.unlink()
        expect = r"refused: hosted/site-cp311/borgusb/hosted/__init__\.py is missing on the stick"
    before = copies()
    run = Launcher(stick, python3, "--port", str(free_port()))
    try:
        assert run.proc.wait(timeout=60) == 2, run.text()
        assert re.search(expect, run.text()), run.text()
        assert "Nothing from it was run" in run.text() or "nothing was run" in run.text()
        assert not canary.exists(), "code from the tampered stick ran"
        assert copies() == before, "the RAM copy was left behind"
    finally:
        run.stop()
