"""The brain's OpenAI-compatible client (`OpenAIModel`) against a stand-in endpoint.

DeepSeek, a llama.cpp server or Ollama cannot run here, so `openai_standin` is a stand-in for such
a service: a small aiohttp server that speaks the OpenAI chat-completions format (bearer key,
``response_format`` with a JSON schema, ``choices`` and ``usage``) with the real local model
behind it. What is tested is our side: the request the client sends, the action that comes back
and checks out, and the endpoint's failures (wrong key, an error status, junk, an oversized
answer) each reported as a `ModelError`, never passed on as text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from borgusb.agents.actions import parse_action
from borgusb.agents.models import MAX_REPLY_BYTES, LocalModel, ModelError, OpenAIModel

KEY = "sk-test-not-a-real-key"


async def openai_standin(model: LocalModel, seen: list[dict[str, Any]]) -> web.Application:
    """A stand-in for an OpenAI-compatible service (see the module docstring)."""

    async def completions(request: web.Request) -> web.StreamResponse:
        mode = request.query.get("mode", "")
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": "bad key"}, status=401)
        if mode == "junk":
            return web.Response(text="<html>not json</html>")
        if mode == "huge":
            return web.Response(body=b"x" * (MAX_REPLY_BYTES + 10))
        body = await request.json()
        seen.append(body)
        schema = body["response_format"]["schema"]
        llm = model._llm if model.loaded else None
        if llm is None:
            await model.think(body["messages"], ("end_session",), (), 4)  # loads it
            llm = model._llm
        out = await asyncio.to_thread(
            llm.create_chat_completion,
            messages=body["messages"],
            response_format={"type": "json_object", "schema": schema},
            max_tokens=body["max_tokens"],
            temperature=0.0,
            repeat_penalty=1.3,
        )
        return web.json_response(out)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    # one thread: two stall each other beside the suite's QEMU guests (a clean-clone run's stand-in
    # did not answer within the client's 60 s); what the stand-in's own model runs on is not under test
    runner = web.AppRunner(await openai_standin(LocalModel(temperature=0.0, threads=1), seen))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1", seen
    await runner.cleanup()


async def test_an_openai_compatible_endpoint_thinks_under_the_schema(endpoint: tuple[str, list[Any]]) -> None:
    url, seen = endpoint
    model = OpenAIModel(url, "smollm2", KEY)
    messages = [
        {"role": "system", "content": "Answer with one JSON action: reply_person {text}."},
        {"role": "user", "content": "Task: say hello to the person.\nYour next action (JSON):"},
    ]
    thought = await model.think(messages, ("reply_person",), (), 60)
    assert type(parse_action(thought.text, ("reply_person",))).__name__ == "ReplyPerson"
    assert thought.tokens > 0
    sent = seen[-1]
    assert sent["model"] == "smollm2" and sent["max_tokens"] == 60 and sent["messages"] == messages
    assert json.dumps(sent["response_format"]["schema"]).count("reply_person") == 1


@pytest.mark.parametrize(
    ("suffix", "key", "words"),
    [
        ("", "sk-wrong", "HTTP 401"),
        ("?mode=junk", KEY, "not a chat completion"),
        ("?mode=huge", KEY, "too large"),
    ],
)
async def test_endpoint_failures_are_model_errors(
    endpoint: tuple[str, list[Any]], suffix: str, key: str, words: str
) -> None:
    url, _ = endpoint
    model = OpenAIModel(url, "m", key)
    model.url += suffix
    with pytest.raises(ModelError, match=words):
        await model.think([{"role": "user", "content": "hi"}], ("reply_person",), (), 8)


async def test_an_endpoint_that_does_not_answer_is_a_model_error() -> None:
    model = OpenAIModel("http://127.0.0.1:9/v1", "m", KEY, timeout_s=2)
    with pytest.raises(ModelError, match="did not answer"):
        await model.think([{"role": "user", "content": "hi"}], ("reply_person",), (), 8)
