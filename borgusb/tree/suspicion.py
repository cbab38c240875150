"""SWIM-style suspicion of a silent peer (``model.TreeNode``), and what it costs in false detections.

A peer silent for ``TreeConfig.suspect_ms`` (``confirm_misses`` missed beats) is only *suspected*:
for ``probe_rounds`` rounds of ``probe_ms`` the suspecting node pings it directly and asks
``probe_relays`` other members to ping it for it (``tree.probe``, SWIM's ping-req). Any answer,
direct or relayed, refutes the suspicion; a suspect confirms only if all of them stay silent.
So a lossy link alone must lose the missed beats, then every probe and every relayed path
of every round, before a live member is confirmed dead: ``false_confirms_per_hour`` gives the
odds with each message lost independently (a datagram's model; the real transport is TCP,
where loss delays a message by a retransmission instead of losing it, so fewer still).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import Member

__all__ = ["Suspect", "false_confirms_per_hour"]


@dataclass(slots=True)
class Suspect:
    """One suspected peer: where we expect it, since when, and whose word may clear it."""

    member: Member
    pos: int  # the slot we expect it at: our child's, our parent's, or (at the root) its table slot
    since: int  # ms the suspicion began
    grace: int = 0  # ms to wait after confirming before acting (a root child's place in the takeover order)
    rounds: int = 0  # probe rounds sent so far
    acted: int = -(1 << 62)  # when we last reported it (re-sent every heartbeat while it stands)
    asked: set[str] = field(default_factory=set)  # relays asked: only their probe_ok refutes


def false_confirms_per_hour(
    loss: float,
    heartbeat_ms: int,
    confirm_misses: int,
    probe_rounds: int,
    probe_ms: int,
    relays: int,
    beat_messages: int = 1,
) -> float:
    """Expected false confirmations of one live peer per hour when every message is lost with
    probability ``loss``. ``beat_messages`` is what one beat needs to arrive: 1 for a parent
    hearing its child's ``tree.hb``, 2 for a child hearing its parent (``tree.hb`` then ``tree.hb_ack``)."""
    ok = 1.0 - loss
    beat_lost = 1.0 - ok**beat_messages
    suspicions = 3_600_000 / heartbeat_ms * beat_lost**confirm_misses
    window_beats = probe_rounds * probe_ms // heartbeat_ms  # beats that still fall due while probing
    round_lost = (1.0 - ok**2) * (1.0 - ok**4) ** relays  # ping+pong, and probe/ping/pong/probe_ok per relay
    return suspicions * round_lost**probe_rounds * beat_lost**window_beats
