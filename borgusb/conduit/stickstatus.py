"""Whether the wallet in use is saved on the booted stick: what the write-back step recorded
(borgusb.image.writeback), checked against the keystore the conduit holds, for every page to say."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

STATES = ("saved", "saving", "failed")  # what borgusb.image.writeback records


@dataclass(frozen=True)
class StickSaved:
    state: str  # "saved", "saving", "failed", "none" (no wallet in RAM), "unknown" (no record yet)
    detail: str = ""

    @property
    def words(self) -> str:
        """The line a page shows."""
        return {
            "saved": "Your wallet is saved on this stick.",
            "saving": "Saving your wallet to the stick… keep the stick in.",
            "failed": f"Your wallet is NOT saved on the stick: {self.detail}",
            "none": "This stick holds no wallet yet.",
            "unknown": "Saving your wallet to the stick… keep the stick in.",
        }[self.state]


def read(keystore_path: Path, status_path: Path) -> StickSaved:
    """The state for the keystore at `keystore_path` (a record of an earlier wallet says nothing of this one)."""
    try:
        digest = hashlib.sha256(Path(keystore_path).read_bytes()).hexdigest()
    except OSError:
        return StickSaved("none")
    try:
        doc = json.loads(Path(status_path).read_text())
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict) or doc.get("sha256") != digest or doc.get("state") not in STATES:
        return StickSaved("unknown")
    return StickSaved(str(doc["state"]), str(doc.get("detail", ""))[:300])
