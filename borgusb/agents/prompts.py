"""An agent's prompt as a chain of signed versions.

Each version names the previous one's id and is signed by the agent's own key (domain-separated, as
the ledger's and mail's documents are), so the history of what an agent was told to be cannot be
rewritten by whoever stores it. A rollback is a new version carrying an old version's text: the
history only grows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..keys import SigningKey, is_public_key_hex
from ..signed import signed_by, signing_bytes

DOMAIN = "borgusb.agent.prompt"
MAX_PROMPT_CHARS = 4000
MAX_VERSIONS = 64  # the oldest are dropped from memory beyond this; their ids stay in the chain


class PromptError(ValueError):
    """A prompt version that does not check out (bad signature, broken chain, too long)."""


@dataclass(frozen=True, slots=True)
class PromptVersion:
    agent: str  # the agent's public key
    n: int
    prev: str  # id of version n-1, "" for the first
    text: str
    ts: int
    why: str
    sig: str

    def body(self) -> dict[str, Any]:
        return {"agent": self.agent, "n": self.n, "prev": self.prev, "text": self.text, "ts": self.ts, "why": self.why}

    @property
    def id(self) -> str:
        return hashlib.sha256(signing_bytes(self.body(), DOMAIN)).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "sig": self.sig, "id": self.id}


def sign_version(key: SigningKey, n: int, prev: str, text: str, ts: int, why: str) -> PromptVersion:
    if not text.strip() or len(text) > MAX_PROMPT_CHARS:
        raise PromptError(f"a prompt is 1 to {MAX_PROMPT_CHARS} characters")
    body = {"agent": key.public_key_hex, "n": n, "prev": prev, "text": text, "ts": ts, "why": why[:200]}
    sig = key.sign(signing_bytes(body, DOMAIN)).hex()
    return PromptVersion(sig=sig, **body)  # type: ignore[arg-type]


def check_version(doc: Any) -> PromptVersion:
    """A version from a stored or received document: its fields, then its agent's signature."""
    keys = {"agent", "n", "prev", "text", "ts", "why", "sig"}
    if not isinstance(doc, dict) or not keys <= doc.keys():
        raise PromptError("a prompt version has agent, n, prev, text, ts, why and sig")
    try:
        v = PromptVersion(**{k: doc[k] for k in keys})
    except TypeError as exc:
        raise PromptError(str(exc)) from None
    if not is_public_key_hex(v.agent) or not isinstance(v.n, int) or v.n < 1 or not isinstance(v.text, str):
        raise PromptError("malformed prompt version")
    if not signed_by(v.agent, v.sig, signing_bytes(v.body(), DOMAIN)):
        raise PromptError("the prompt version is not signed by its agent")
    return v


class PromptHistory:
    """The versions of one agent's prompt; the last is the one in use."""

    def __init__(self, key: SigningKey, first: str, ts: int) -> None:
        self.key = key
        self.versions = [sign_version(key, 1, "", first, ts, "the first prompt")]

    @property
    def current(self) -> PromptVersion:
        return self.versions[-1]

    def propose(self, text: str, ts: int, why: str = "proposed by the agent") -> PromptVersion:
        last = self.current
        version = sign_version(self.key, last.n + 1, last.id, text, ts, why)
        self.versions.append(version)
        del self.versions[:-MAX_VERSIONS]
        return version

    def rollback(self, n: int, ts: int) -> PromptVersion:
        """A new version with version n's text (n must still be held)."""
        for v in self.versions:
            if v.n == n:
                return self.propose(v.text, ts, f"rollback to version {n}")
        raise PromptError(f"version {n} is not held (held: {self.versions[0].n}..{self.current.n})")

    def restore(self, docs: list[Any]) -> None:
        """Take a stored chain (each version checked, each linked to the one before, all this agent's)."""
        chain = [check_version(d) for d in docs]
        for a, b in zip(chain, chain[1:], strict=False):
            if b.prev != a.id or b.n != a.n + 1:
                raise PromptError(f"version {b.n} does not follow version {a.n}")
        if not chain or any(v.agent != self.key.public_key_hex for v in chain):
            raise PromptError("a stored prompt chain is this agent's own")
        self.versions = chain[-MAX_VERSIONS:]
