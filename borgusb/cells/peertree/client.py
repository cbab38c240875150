"""TreeClient: status, members and broadcasts of the base PeerTree network."""

from __future__ import annotations

from ..kit import CellClient


class TreeClient(CellClient):
    cell = "peerTreeNet"
