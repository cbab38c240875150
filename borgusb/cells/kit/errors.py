"""Refusals that travel from a handler to its caller as a machine-readable reason.

A handler raises `RequestError(reason, detail, status)`; the receptor answers
``{"error": reason, "detail": detail}`` with that status; the caller's
`PeerClient` raises `PeerRejected` whose ``reason`` is that same word. Nobody
parses exception text: the reason is a short identifier (``not_owner``,
``quota``, ``malformed`` ...) and the detail is for people.
"""

from __future__ import annotations

import re

_REASON = re.compile(r"^[a-z][a-z0-9_.]{0,47}$")


class RequestError(Exception):
    """A receptor request that cannot be served: a reason for programs, a detail for people."""

    def __init__(self, reason: str, detail: str = "", status: int = 400) -> None:
        if not _REASON.match(reason):
            raise ValueError(f"a refusal reason is a short lowercase identifier, not {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.status = status

    def to_json(self) -> dict[str, str]:
        return {"error": self.reason, "detail": self.detail[:300]}
