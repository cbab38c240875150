"""The echo cell: answers ``echo.say`` with its greeting, remembers ``note`` broadcasts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from borgusb import envelope
from borgusb.cells.kit import Cell, CellClient, RequestError, Settings, on_broadcast, receptor, setting


@dataclass(frozen=True)
class EchoSettings(Settings):
    cell: ClassVar[str] = "exampleEchoCell"

    greeting: str = setting("hello", "what the cell says before the echoed text")
    max_len: int = setting(64, "longest text echoed", low=1, high=4096)


class EchoCell(Cell):
    settings: EchoSettings

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.notes: list[tuple[str, str]] = []  # (signer, text), newest last, at most 16

    @receptor("echo.say")
    async def _r_say(self, env: envelope.Envelope) -> Any:
        text = env.payload.get("text") if isinstance(env.payload, dict) else None
        if not isinstance(text, str):
            raise RequestError("malformed", 'say {"text": ...}')
        if len(text) > self.settings.max_len:
            raise RequestError("too_long", f"at most {self.settings.max_len} characters", 413)
        return {"said": f"{self.settings.greeting}, {text}", "by": env.signer}

    @receptor("echo.notes")
    async def _r_notes(self, env: envelope.Envelope) -> Any:
        return {"notes": [{"from": s, "text": t} for s, t in self.notes]}

    @on_broadcast("note")
    def _b_note(self, signer: str, data: dict[str, Any]) -> None:
        text = data.get("text")
        if isinstance(text, str):
            self.notes = [*self.notes, (signer, text[:200])][-16:]

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc["echo"] = {"notes": len(self.notes)}
        return doc


class EchoClient(CellClient):
    cell = "exampleEchoCell"

    async def say(self, text: str) -> str:
        reply = await self.call("echo.say", {"text": text})
        return str(reply["said"])

    async def notes(self) -> list[dict[str, str]]:
        return list((await self.call("echo.notes", {}))["notes"])
