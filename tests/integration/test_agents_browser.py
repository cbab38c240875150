"""The Agents and Chat pages in Chromium (issue 19, "Chat in Chromium"), with the real local model.

Real processes on loopback: two service registries (one beside each memory cell), two memory
cells, one brain (llama-cpp-python with SmolLM2) and one agent cell whose System Monitor watches
them; a `borgusb conduit` process with its own wallet. On the Agents page the person creates an
agent (theirs: registered by the wallet's key; the node's monitor agent is listed as someone
else's), saves a new prompt version and restores the first (signed versions shown, the history
only grows), and runs a short session whose steps are shown. On the Chat page a typed question
shows who is thinking, then an answer from the agent, named with its key (asked before any agent
existed, the page said to create one). A memory cell the test kills comes up as a monitor notice
in the chat. Network text (a hostile prompt) stays text. The pages are docs/screenshots/agents.png
and chat.png.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
from pathlib import Path
from typing import Any

import pytest

from borgusb.cells.agents.client import AgentClient
from borgusb.cells.memory.client import MemoryClient
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.identity import Wallet
from borgusb.keys import SigningKey
from borgusb.keystore import KdfParams, save_wallet
from borgusb.memory.record import compose
from borgusb.net.peer import PeerClient

from .browser import ARGS, CHROMIUM
from .conduit_proc import conduit_process

pytestmark = pytest.mark.slow

WORDS = " ".join(["abandon"] * 23 + ["art"])
PASSPHRASE = "correct horse battery"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
HOSTILE = '<img src=x onerror="document.body.dataset.pwned=1">'
A1, VICTIM = "127.0.0.2", "127.0.0.3"
FINDINGS = (
    "Storage: every object is cut into shards, and each shard is kept by R holders on different nodes.",
    "Storage on this network repairs a shard whose copies fall below R from the copies that remain.",
)
THINK_MS = 200_000  # a model's answer on a loaded 2-core machine: seconds, sometimes a minute or two


def run_async(coro: Any) -> Any:
    """Playwright's sync API owns this thread's event loop; run coroutines beside it."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def start(make_cluster: Any) -> dict[str, Any]:
    clusters = {}
    for cell, n in (("serviceMgrCell", 2), ("peerMemoryCell", 2), ("borgAgentBrain", 1), ("borgAgentCell", 1)):
        clusters[cell] = make_cluster(cell)
        clusters[cell].up(n)
    for cell, n in (("serviceMgrCell", 2), ("peerMemoryCell", 2), ("borgAgentCell", 1)):
        await clusters[cell].wait_one_tree(timeout_s=90, expect=n)
    await until("the memory cells agree on their members", lambda: _members(clusters["peerMemoryCell"], 2))
    clock = SystemClock()  # a few findings for the chat to search (the model picks its own query)
    async with PeerClient(SigningKey.generate(), clock, Verifier(clock)) as peers:
        for text in FINDINGS:
            await MemoryClient(peers, A1).put(compose(peers.key, text, kind="finding", ts=clock.now_ms()))
    return clusters


async def until(what: str, probe: Any, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if got := await probe():
            return got
        await asyncio.sleep(0.3)
    raise TimeoutError(what)


async def _members(cluster: Any, n: int) -> bool:
    docs = await cluster.status()
    return len(docs) == n and all(d.get("memory", {}).get("members") == n for d in docs)


async def monitor_watches(cell: str) -> None:
    """The System Monitor's last round read `cell` (so its loss will be reported)."""
    clock = SystemClock()
    async with PeerClient(SigningKey.generate(), clock, Verifier(clock)) as peers:

        async def seen() -> bool:
            return cell in (await AgentClient(peers, A1).status())["agents"]["monitor"]["cells"]

        await until(f"the monitor reads {cell}", seen)


def keystore(tmp_path: Path) -> Path:
    path = tmp_path / "wallet" / "keystore.json"
    path.parent.mkdir()
    save_wallet(path, Wallet.from_mnemonic(WORDS), PASSPHRASE, KdfParams(iterations=1, lanes=1, memory_kib=1024))
    return path


def test_agents_and_chat_pages(make_cluster: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: ./build.sh test installs it")
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_MEMORY_R", "2")
    monkeypatch.setenv("BORGUSB_AGENT_BRAIN", A1)
    monkeypatch.setenv("BORGUSB_AGENT_MONITOR_S", "2")
    monkeypatch.setenv("BORGUSB_AGENT_BUDGET", "3")  # a short session: three model calls
    clusters = run_async(start(make_cluster))
    with conduit_process(keystore(tmp_path), [A1], tmp_path / "conduit.log") as link, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(link)
            page.fill("#passphrase", PASSPHRASE)
            page.click("#unlock")
            page.wait_for_selector("#address")

            # Chat before any agent but the node's monitor: refused, with what to do
            page.click("nav >> text=Chat")
            page.fill("#question", "Is anyone there?")
            page.click("#ask-send")
            refusal = page.locator("#conversation li.refused[data-reason=no_agent]")
            expect(refusal).to_contain_text("create one on the Agents page", timeout=30_000)

            # Agents: the node's monitor is someone else's; alice, created here, is the person's
            page.click("nav >> text=Agents")
            monitor = page.locator("#agent-list tbody tr[data-name=monitor]")
            expect(monitor).to_contain_text("someone else", timeout=30_000)
            page.fill("#create-name", "alice")
            page.fill("#create-prompt", f"You look after storage and answer briefly. {HOSTILE}")
            page.click("#create-button")
            expect(page.locator("#create-status")).to_contain_text("alice is yours", timeout=30_000)
            alice = page.locator("#agent-list tbody tr[data-name=alice]")
            expect(alice).to_contain_text("you")
            expect(page.locator("#detail-name")).to_have_text("alice")
            expect(page.locator("#detail-keys")).to_contain_text("owner you")
            versions = page.locator("#versions > li")
            expect(versions).to_have_count(1, timeout=30_000)
            expect(versions.first).to_contain_text(HOSTILE)  # the prompt as text, never markup

            # a new signed prompt version, then the first restored: three versions, the third in use
            page.fill("#propose-text", "You watch the network's storage and keep exact, short findings.")
            page.click("#propose-button")
            expect(page.locator("#versions-status")).to_contain_text("now version 2", timeout=30_000)
            page.click("#versions button.restore[data-n='1']")
            expect(page.locator("#versions-status")).to_contain_text("Restored version 1: now version 3")
            expect(versions).to_have_count(3)
            newest = page.locator("#versions > li[data-n='3']")
            expect(newest).to_contain_text("(in use)")
            expect(newest).to_contain_text("rollback to version 1")
            expect(newest).to_contain_text(HOSTILE)
            expect(newest.locator("button.restore")).to_have_count(0)
            expect(alice).to_contain_text("version 3 of 3", timeout=20_000)

            # a short session: who thinks is shown, then each step with what came of it
            page.fill("#session-task", "Read the next module of BorgUSB and keep one finding as a public memory.")
            page.click("#session-run")
            expect(page.locator("#session-status")).to_contain_text("alice is thinking")
            expect(page.locator("#session-status")).to_contain_text("session ended", timeout=THINK_MS)
            steps = page.locator("#session-steps > li")
            assert steps.count() >= 1
            for outcome in steps.evaluate_all("els => els.map(e => e.dataset.outcome)"):
                assert outcome in ("done", "refused", "invalid")
            page.screenshot(path=str(SHOTS / "agents.png"), full_page=True)

            # Chat: the question shows who is thinking, then the answer names its agent and key
            page.click("nav >> text=Chat")
            expect(refusal).to_be_visible()  # the conversation is kept while the tab lives
            page.fill("#question", "What do the agents know about storage on this network?")
            page.click("#ask-send")
            expect(page.locator("#thinking")).to_contain_text("thinking")
            expect(page.locator("#ask-send")).to_be_disabled()
            answer = page.locator("#conversation li.agent").first
            expect(answer).to_be_visible(timeout=THINK_MS)
            assert answer.get_attribute("data-agent") == "alice"
            expect(answer.locator(".who")).to_contain_text(re.compile(r"alice · [0-9a-f]{12}…"))
            assert answer.locator(".answer").inner_text().strip()
            expect(page.locator("#conversation li.refused")).to_have_count(1)  # only the first question's
            expect(page.locator("#ask-send")).to_be_enabled()
            expect(page.locator("#thinking")).to_have_text("")  # no late "thinking" tick after the answer

            # the System Monitor's report of a memory cell that went away, as a notice in the chat
            run_async(monitor_watches(f"peerMemoryCell@{VICTIM}"))
            clusters["peerMemoryCell"].kill(next(n for n in clusters["peerMemoryCell"].nodes if n.ip == VICTIM))
            notice = page.locator("#conversation li.notice[data-kind=cell_gone]", has_text=VICTIM)
            expect(notice.first).to_contain_text("monitor: cell_gone", timeout=60_000)
            page.screenshot(path=str(SHOTS / "chat.png"), full_page=True)

            # the monitor's claim for that report, under its earnings: no other node's monitor is
            # here to confirm it, so nothing is paid, and the page says why
            page.click("nav >> text=Agents")
            page.locator("#agent-list tbody tr[data-name=monitor] button.open").click()
            expect(page.locator("#detail-name")).to_have_text("monitor · monitoring", timeout=30_000)
            expect(page.locator("#earned")).to_have_text("Earned: 0 Shells")
            claim = page.locator("#claims li", has_text=VICTIM).first
            expect(claim).to_contain_text("anomaly_report", timeout=30_000)
            expect(claim).to_contain_text(re.compile("waiting for another node's monitor|no other node's monitor"))
            assert page.evaluate("document.body.dataset.pwned") is None
        finally:
            browser.close()
