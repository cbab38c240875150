"""Decorators that declare what a cell answers, collected once per class.

* ``@receptor("type")``: a signed request on the receptor (``POST /recp``);
  ``async def h(self, env) -> reply payload``.
* ``@on_broadcast("kind")``: a broadcast of that kind reached this node;
  ``def h(self, origin_pubkey, data)`` (or ``async def``). The kind is the
  ``"k"`` member of the broadcast's data, which `Cell.broadcast(kind, ...)` sets.
* ``@frame("type")``: a binary frame (signed envelope, newline, bytes) on the
  receptor's ``POST /frame``; ``async def h(self, env, data) -> (payload, bytes)``.
* ``@route("recp" | "mon" | "net", "GET" | "POST", "/path")``: a plain aiohttp
  handler on one of the cell's ports (the monitoring port's data channels).

`collect(cls)` walks the class's MRO once, so a subclass overrides a parent's
handler for the same key by defining it again, and the base class needs to
know nothing about any subclass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "_borgusb_handler"
PORTS = ("net", "recp", "mon")


def _mark(kind: str, key: Any) -> Callable[[F], F]:
    def mark(fn: F) -> F:
        setattr(fn, _MARK, (kind, key))
        return fn

    return mark


def receptor(type: str) -> Callable[[F], F]:
    """Mark a method as the handler of a receptor request type."""
    return _mark("receptor", type)


def on_broadcast(kind: str) -> Callable[[F], F]:
    """Mark a method as the handler of one broadcast kind."""
    return _mark("broadcast", kind)


def frame(type: str) -> Callable[[F], F]:
    """Mark a method as the handler of a binary frame type."""
    return _mark("frame", type)


def route(ports: str | tuple[str, ...], method: str, path: str) -> Callable[[F], F]:
    """Mark a method as a plain aiohttp handler on one or more of the cell's ports."""
    names = (ports,) if isinstance(ports, str) else ports
    if not names or any(p not in PORTS for p in names):
        raise ValueError(f"ports must be among {PORTS}")
    return _mark("route", (names, method.upper(), path))


@dataclass
class HandlerTable:
    """Every handler a cell class declares, by kind and key (method names, bound later)."""

    receptors: dict[str, str] = field(default_factory=dict)
    broadcasts: dict[str, str] = field(default_factory=dict)
    frames: dict[str, str] = field(default_factory=dict)
    routes: dict[tuple[tuple[str, ...], str, str], str] = field(default_factory=dict)


_TABLES: dict[type, HandlerTable] = {}


def collect(cls: type) -> HandlerTable:
    """The handler table of a class (cached): base classes first, subclasses override."""
    table = _TABLES.get(cls)
    if table is not None:
        return table
    table = HandlerTable()
    for klass in reversed(cls.__mro__):
        for name, attr in vars(klass).items():
            mark = getattr(attr, _MARK, None)
            if mark is None:
                continue
            kind, key = mark
            if kind == "receptor":
                table.receptors[key] = name
            elif kind == "broadcast":
                table.broadcasts[key] = name
            elif kind == "frame":
                table.frames[key] = name
            else:
                table.routes[key] = name
    _TABLES[cls] = table
    return table
