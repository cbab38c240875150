"""The root's check of a join a member passed on: it must carry its joiner's own signed join.

A member passes a joiner's join (hops 0, signed by the joiner) on to the root (hops 1, signed
by the member). Were the member's word enough, any placed member could ask the root to place
keys that never asked: made-up members, each taking a position, a parent's attention and a
repair when it never answers. So the forward carries the joiner's envelope, and the root
places a forwarded joiner only when that envelope passes the one verification function
(signature, freshness, once: its own replay cache), is a hops-0 ``tree.join`` addressed to
the member that forwarded it, and asks to place exactly the key that signed it.
"""

from __future__ import annotations

from typing import Any

from ... import envelope
from ...clock import Clock


class JoinForged(Exception):
    """A forwarded join without its joiner's own signed join (refused, counted ``refused:join_forged``)."""

    reason = "join_forged"


class ForwardedJoins:
    """Checks the joiner's envelope inside forwarded joins (a verifier of its own: the inner
    envelope is addressed to the forwarding member, not to us, so its recipient is checked here)."""

    def __init__(self, clock: Clock) -> None:
        self.verifier = envelope.Verifier(clock)

    def proof_of(self, env: envelope.Envelope, msg: dict[str, Any]) -> dict[str, Any] | None:
        """What the tree gets with a verified net message ``env`` (payload ``msg``): for a join, its
        own envelope (passed on if this node forwards the join to the root); raises JoinForged for a
        forwarded join that does not carry its joiner's proof; None for any other message."""
        if env.type != "tree.join":
            return None
        if msg.get("hops", 0) != 0 and not self.proven(env, msg):
            raise JoinForged("a forwarded join must carry its joiner's own signed join, addressed to the forwarder")
        return env.to_dict()

    def proven(self, outer: envelope.Envelope, msg: dict[str, Any]) -> bool:
        """Whether ``msg`` (a forwarded ``tree.join`` that came in ``outer``) carries its joiner's proof."""
        inner_doc, joiner = msg.get("signed"), msg.get("joiner")
        if not isinstance(inner_doc, dict) or not isinstance(joiner, dict):
            return False
        try:
            inner = self.verifier.verify(inner_doc, expected_type="tree.join")
        except envelope.EnvelopeError:
            return False
        asked = inner.payload
        return (
            isinstance(asked, dict)
            and inner.to == envelope.address(outer.signer, outer.sender.port)
            and asked.get("t") == "tree.join"
            and asked.get("hops", 0) == 0
            and asked.get("joiner") == joiner
            and joiner.get("pubkey") == inner.signer
        )
