"""Each step's token budget comes from its actions' own bounds, and an output the budget cut is
refused as ``cut`` and asked again (issue 19: every model output counted, none executed unchecked)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from borgusb.agents.actions import MAX_TOKENS, describe, token_budget
from borgusb.agents.prompts import PromptHistory
from borgusb.agents.session import Agent, Thought, run_session
from borgusb.keys import SigningKey


def new_agent() -> Agent:
    key = SigningKey.generate()
    return Agent("alice", key, SigningKey.generate().public_key_hex, PromptHistory(key, "You are careful.", 1))


def test_budgets_follow_the_schema_and_the_prompt_names_each_cap() -> None:
    # a reply at its 600-character cap fits at 3 characters a token; a choice of specialty needs little
    assert 600 // 3 < token_budget(("reply_person",)) <= MAX_TOKENS
    assert token_budget(("choose_specialty",)) < token_budget(("reply_person",))
    assert token_budget(("propose_prompt",)) == MAX_TOKENS  # 4000 characters: the brain's limit
    assert "summary (at most 200 characters)" in describe(("end_session",))


def test_a_cut_output_is_refused_as_cut_and_asked_again_with_the_same_budget() -> None:
    class CuttingBrain:
        def __init__(self) -> None:
            self.budgets: list[int] = []
            self.prompts: list[str] = []

        async def think(
            self, messages: list[dict[str, str]], allowed: tuple[str, ...], agents: tuple[str, ...], max_tokens: int
        ) -> Thought:
            self.budgets.append(max_tokens)
            self.prompts.append(messages[-1]["content"])
            if len(self.budgets) == 1:
                return Thought('{"action": "reply_person", "text": "a very long', max_tokens, 1, cut=True)
            return Thought('{"action": "reply_person", "text": "short"}', 9, 1)

    async def ok(agent: Agent, action: Any) -> tuple[str, list[str]]:
        return "ok", []

    brain = CuttingBrain()
    session = asyncio.run(run_session(new_agent(), brain, ok, "t", agenda=[("reply_person",)]))
    assert [(s.outcome, s.reason) for s in session.steps] == [("invalid", "cut"), ("done", "")]
    assert brain.budgets == [token_budget(("reply_person",))] * 2
    assert "cut by the token budget" in brain.prompts[1] and session.replies == ["short"]


def test_the_local_grammar_keeps_raw_control_characters_out_of_texts() -> None:
    pytest.importorskip("llama_cpp")
    from llama_cpp.llama_grammar import LlamaGrammar

    from borgusb.agents.actions import schema_for
    from borgusb.agents.models import CHAR_RULE, JSON_CHAR_RULE, json_gbnf

    gbnf = json_gbnf(schema_for())
    assert JSON_CHAR_RULE in gbnf and CHAR_RULE not in gbnf  # a newline in a text must be written \n
    LlamaGrammar.from_string(gbnf, verbose=False)  # llama.cpp parses it
    LlamaGrammar.from_string(json_gbnf(schema_for(("choose_specialty",))), verbose=False)  # no free text: no char rule
