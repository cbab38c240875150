"""The ready probe's AI checks, asked for by the stick's marker (``selftest``):

* ``ai``: ``BORGUSB-SELFTEST ai mounted=yes model=ok llama=ok search=ok ...``: the stick's AI stack is
  mounted, the brain's unit names a GGUF model that is there, llama_cpp loads with that unit's
  environment (its C++ runtime from the stick included), and a memory put on the node's memory cell is
  found by a search (which loads wordllama and bm25s from the stick). No thought: under TCG the model
  needs minutes for one answer (7.4 min for 8 tokens), which is the benchmark's business;
* ``think``: ``BORGUSB-THINK`` and ``BORGUSB-MEM-THINK``: RAM in use while one agent thinks (the brain's
  model loaded and generating), the second figure of bench_image beside the idle one of BORGUSB-MEM,
  said as soon as measured; ``BORGUSB-THINK-ANSWER`` once the brain answers (or gives up).

The questions are signed by a key made here: a brain without the machine's node key (the stick's
cells make up their own) answers any signer. Run after the reports, so nothing here is in the idle figures.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .aimount import AI
from .memory import mem_in_use_mib, memory_report, unit_pss_kib
from .probehttp import http_get, mon_port

BRAIN = "borgAgentBrain"
THINK_TIMEOUT_S = 900.0  # TCG runs the model ~20x slower than the host
QUESTION = [
    {"role": "system", "content": "You are an agent of a BorgUSB node. Answer with one JSON action."},
    {"role": "user", "content": "Tell the person, in two sentences, what a peer-to-peer node on a USB stick does."},
]


def mounted() -> bool:
    try:
        return any(line.split()[1:3] == [str(AI), "squashfs"] for line in Path("/proc/mounts").read_text().splitlines())
    except OSError:
        return False


def _peers(timeout_s: float) -> Any:
    from ..clock import SystemClock
    from ..envelope import Verifier
    from ..keys import SigningKey
    from ..net.peer import PeerClient

    clock = SystemClock()
    return PeerClient(SigningKey.generate(), clock, Verifier(clock), timeout_s=timeout_s), clock


def _why(exc: Exception) -> str:
    return " ".join(f"{type(exc).__name__}:{exc}".split())[:200]


async def _think(ip: str, max_tokens: int) -> str:
    from ..cells.brain.client import BrainClient

    peers, _ = _peers(THINK_TIMEOUT_S)
    started = time.monotonic()
    try:
        thought = await BrainClient(peers, ip).think(QUESTION, ("reply_person",), (), max_tokens)
    except Exception as exc:  # the refusal's reason word (no_model, busy) or the transport's, told as is
        return f"failed={_why(exc)}"
    finally:
        await peers.close()
    return f"ok tokens={thought.tokens} ms={thought.ms} waited={time.monotonic() - started:.1f}s"


async def _search(ip: str) -> str:
    from ..cells.memory.client import MemoryClient
    from ..keys import SigningKey
    from ..memory.query import make_query
    from ..memory.record import compose

    peers, clock = _peers(THINK_TIMEOUT_S)
    key = SigningKey.generate()
    started = time.monotonic()
    try:
        memories = MemoryClient(peers, ip)
        memory = compose(key, "The stick's AI stack is read from a squashfs only when it is used.", ts=clock.now_ms())
        put = await memories.put(memory)
        found = await memories.search(make_query("when is the model read from the USB stick", clock.now_ms()))
    except Exception as exc:
        return f"failed={_why(exc)}"
    finally:
        key.close()
        await peers.close()
    hit = any(r.memory.id == memory.id for r in found.results)
    return (
        f"{'ok' if hit else 'missed'} stored={put.get('stored')} results={len(found.results)}"
        f" searched-in={time.monotonic() - started:.1f}s"
    )


def journal_tail(cell: str, lines: int = 3) -> str:
    """The last lines a cell logged (what a failed request left there), on one line."""
    out = subprocess.run(
        ["journalctl", "-u", f"borgusb-cell@{cell}.service", "-n", str(lines), "-o", "cat", "--no-pager"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return " | ".join(" ".join(line.split()) for line in out.splitlines() if line.strip())[-400:]


def unit_environment(unit: str) -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", "-P", "Environment", unit], capture_output=True, text=True, check=False)
    return dict(word.split("=", 1) for word in out.stdout.split() if "=" in word)


def model_check(env: dict[str, str]) -> str:
    """The brain's GGUF file, as its unit names it: there, and a GGUF file."""
    path = env.get("BORGUSB_BRAIN_MODEL", "")
    try:
        with open(path, "rb") as fh:
            return "ok" if fh.read(4) == b"GGUF" else "not-gguf"
    except OSError as exc:
        return f"missing:{exc.__class__.__name__}"


def llama_check(env: dict[str, str]) -> str:
    """llama_cpp imported (its shared libraries loaded) by a Python with the brain unit's environment,
    as the brain cell imports it on its first question."""
    code = "from borgusb.aisite import use_ai_site; use_ai_site(); import llama_cpp; print(llama_cpp.__version__)"
    try:
        done = subprocess.run(
            ["python3", "-c", code], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        return "failed=timeout"
    if done.returncode:
        return "failed=" + " ".join(done.stderr.strip().splitlines()[-1:]).replace(" ", "_")[:200]
    return "ok:" + done.stdout.strip()


def ai_selftest(ip: str) -> str:
    """``BORGUSB-SELFTEST ai``: the mount, the brain's model and runtime, one memory put and search."""
    env = unit_environment(f"borgusb-cell@{BRAIN}.service")
    search = asyncio.run(_search(ip))
    if search.startswith("failed"):
        search += f" log=[{journal_tail('peerMemoryCell')}]"
    return (
        f"BORGUSB-SELFTEST ai mounted={'yes' if mounted() else 'no'} model={model_check(env)}"
        f" llama={llama_check(env)} search={search}"
    )


def _brain_status(ip: str) -> dict[str, Any]:
    port = mon_port(BRAIN)
    try:
        status, body = http_get(ip, port or 0, "/status")
        doc = json.loads(body) if status == 200 else {}
        return doc.get("brain", {}) if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


async def _measure_while_thinking(ip: str, cells: list[str], settle_s: float, tell: Callable[[str], None]) -> None:
    started = time.monotonic()
    task = asyncio.create_task(_think(ip, 64))
    loaded_at = None
    peak = 0
    measured = False
    while not task.done() and time.monotonic() - started < THINK_TIMEOUT_S:
        if loaded_at is None and _brain_status(ip).get("loaded"):
            loaded_at = time.monotonic()
        peak = max(peak, mem_in_use_mib())
        if loaded_at is not None and not measured and time.monotonic() - loaded_at >= settle_s:
            _tell_memory(tell, cells, peak, f"{loaded_at - started:.1f}s")
            measured = True
        await asyncio.sleep(0.5)
    if not task.done():
        task.cancel()
    answer = await task if not task.cancelled() else "failed=timeout"
    if not measured:  # answered (or gave up) before the settle time: measured now, said so
        _tell_memory(tell, cells, peak, "never" if loaded_at is None else f"{loaded_at - started:.1f}s after-answer")
    tell(f"BORGUSB-THINK-ANSWER {answer} after={time.monotonic() - started:.1f}s")


def _tell_memory(tell: Callable[[str], None], cells: list[str], peak: int, loaded: str) -> None:
    now, brain = mem_in_use_mib(), unit_pss_kib(f"borgusb-cell@{BRAIN}.service") // 1024
    tell(f"BORGUSB-THINK mem={now}MiB peak={max(peak, now)}MiB brain={brain}MiB loaded-after={loaded}")
    tell(memory_report(cells).replace("BORGUSB-MEM ", "BORGUSB-MEM-THINK ", 1))


def think_selftest(ip: str, cells: list[str], tell: Callable[[str], None], settle_s: float = 5.0) -> None:
    """``BORGUSB-THINK`` (RAM in use and the brain's PSS `settle_s` after its model loaded, while it
    generates; the peak so far) and ``BORGUSB-MEM-THINK`` (BORGUSB-MEM then), then
    ``BORGUSB-THINK-ANSWER`` (the brain's answer, or why not)."""
    asyncio.run(_measure_while_thinking(ip, cells, settle_s, tell))
