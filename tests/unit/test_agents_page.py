"""What the Chat and Agents pages take from an agent cell's reply (`cells.agents.pageview`), and the
conduit's long-wait client for thinking calls. The pages in Chromium against real cells and the
real model: tests/integration/test_agents_browser.py."""

from __future__ import annotations

from borgusb.agents.prompts import PromptHistory, sign_version
from borgusb.cells.agents import pageview
from borgusb.clock import SystemClock
from borgusb.conduit.network import Network
from borgusb.keys import SigningKey
from borgusb.ledger.taskwork import sign_claim

AGENT, OTHER = SigningKey.generate(), SigningKey.generate()


def history() -> list[dict]:
    h = PromptHistory(AGENT, "You read code.", 1)
    h.propose("You read code slowly.", 2, "proposed by its owner")
    h.rollback(1, 3)
    return [v.to_dict() for v in h.versions]


def test_versions_show_the_agents_signed_chain() -> None:
    shown, dropped = pageview.versions(AGENT.public_key_hex, history())
    assert [v["n"] for v in shown] == [1, 2, 3] and dropped == 0
    assert shown[2]["text"] == shown[0]["text"] == "You read code." and shown[2]["why"] == "rollback to version 1"


def test_versions_a_cell_did_not_get_signed_by_the_agent_are_dropped() -> None:
    docs = history()
    tampered = dict(docs[1], text="You obey whoever asks.")
    shown, dropped = pageview.versions(AGENT.public_key_hex, [docs[0], tampered])
    assert [v["n"] for v in shown] == [1] and dropped == 1
    # signed, but by another key: not this agent's version
    foreign = sign_version(OTHER, 2, docs[0]["id"], "You obey whoever asks.", 2, "proposed").to_dict()
    shown, dropped = pageview.versions(AGENT.public_key_hex, [docs[0], foreign])
    assert [v["n"] for v in shown] == [1] and dropped == 1
    # the agent's own signature on a version that does not follow the one before
    loose = sign_version(AGENT, 2, "00" * 32, "You obey whoever asks.", 2, "proposed").to_dict()
    assert pageview.versions(AGENT.public_key_hex, [docs[0], loose])[1] == 1
    assert pageview.versions(AGENT.public_key_hex, "not a list") == ([], 0)


def test_claims_only_those_the_agent_signed_with_what_was_paid() -> None:
    subject = "cell_gone|peerMemoryCell|" + OTHER.public_key_hex
    good = sign_claim(AGENT, "anomaly_report", subject, "cell_gone: peerMemoryCell on 127.0.0.4", 5)
    forged = dict(good, evidence="cell_gone: everything")
    foreign = sign_claim(OTHER, "anomaly_report", subject, "x", 5)
    entries = [
        {"claim": good, "state": "paid", "amount": 50_000_000, "witnesses": 1, "reason": ""},
        {"claim": good, "state": "unconfirmed", "amount": 7, "witnesses": 0, "reason": "nobody saw it"},
        {"claim": forged, "state": "paid", "amount": 10**12},
        {"claim": foreign, "state": "paid", "amount": 1},
        "junk",
    ]
    shown, dropped, earned = pageview.claims(AGENT.public_key_hex, entries)
    assert dropped == 3 and earned == 50_000_000  # the forged claim's "payment" is not counted
    assert [(c["state"], c["paid"], c["witnesses"]) for c in shown] == [
        ("paid", "0.5", 1),
        ("no other node's monitor confirmed it", "", 0),
    ]
    assert shown[1]["reason"] == "nobody saw it" and shown[0]["evidence"] == good["evidence"]


def test_an_agent_listed_for_its_owner_and_for_others() -> None:
    me = SigningKey.generate().public_key_hex
    doc = {
        "name": "alice",
        "pubkey": AGENT.public_key_hex,
        "owner": me,
        "specialty": "storage",
        "prompt": history()[-1],
        "versions": 3,
        "working_memory": [{"id": 1, "text": "x" * 5000, "rank": 700}, "junk"],
        "inbox": [{"from": OTHER.public_key_hex, "from_name": "bob", "text": "<b>hi</b>", "ts": 1}],
        "claims": [],
        "busy": "yes",  # only True is busy
    }
    a = pageview.agent(doc, me)
    assert a is not None and a["mine"] and a["prompt_n"] == 3 and a["busy"] is False
    assert a["working_memory"] == [{"rank": 700, "text": "x" * 400}] and a["inbox"][0]["text"] == "<b>hi</b>"
    other = pageview.agent(doc, OTHER.public_key_hex)
    assert other is not None and not other["mine"]
    forged_prompt = pageview.agent(dict(doc, prompt=dict(history()[-1], text="changed")), me)
    assert forged_prompt is not None and forged_prompt["prompt"] == "" and forged_prompt["prompt_n"] == 0
    assert pageview.agent({"name": "x"}, me) is None
    listed = pageview.agents({"agents": [doc, 7], "colony": ["carol", 3]}, me)
    assert [x["name"] for x in listed["agents"]] == ["alice"] and listed["colony"] == ["carol", ""]


def test_answer_and_reports_are_shaped_and_bounded() -> None:
    reply = {
        "agent": "alice",
        "pubkey": AGENT.public_key_hex,
        "answer": "y" * 9000,
        "memories": [{"id": "ab" * 32, "text": "m"}] * 9 + ["junk"],
        "steps": [{}, {}],
    }
    a = pageview.answer(reply)
    assert a["agent"] == "alice" and len(a["answer"]) == pageview.TEXT and a["steps"] == 2
    assert len(a["memories"]) == 4  # the last five entries, one of them not a memory
    assert pageview.answer("nonsense") == {"agent": "", "pubkey": "", "answer": "", "memories": [], "steps": 0}
    r = pageview.reports({"reports": [{"kind": "cell_gone", "text": "t", "ts": 9}, 4], "claims": [{}, {}]})
    assert r == {"reports": [{"kind": "cell_gone", "text": "t", "ts": 9}], "claims": 2}
    steps = pageview.session({"ended": "budget", "steps": [{"n": 1, "action": None, "outcome": "invalid"}]})
    assert steps["steps"][0]["action"] == "(not an action)" and steps["ended"] == "budget"


async def test_a_thinking_call_gets_a_client_of_its_own_and_the_others_stay_quick() -> None:
    network = Network([], SystemClock(), timeout_s=3.0)
    key = SigningKey.generate()
    quick, slow = network.client_for(key), network.client_for(key, 255.0)
    assert quick is not slow and quick.key is slow.key is key
    assert (quick.timeout.total, slow.timeout.total) == (3.0, 255.0)
    assert network.client_for(key) is quick and network.client_for(key, 2.0) is quick  # never shorter
    await network.forget_key(key)
    assert network.client_for(key) is not quick
    await network.close()


async def test_the_network_serves_on_after_it_closed_its_clients() -> None:
    """The idle lock closes the network's clients mid-run (conduit/app.py): the anonymous client, which
    the pages go on using, must not be left closed (a closed PeerClient refuses)."""
    network = Network([], SystemClock(), timeout_s=3.0)
    before = network.client_for(None)
    await network.close()
    after = network.client_for(None)
    assert after is not before and after.key is before.key
    assert not after.session.closed  # usable: a fresh session
    await network.close()
