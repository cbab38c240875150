"""A cell's typed settings: declared once, validated once, filled from flags, args file or environment.

A cell declares a frozen dataclass of `setting(...)` fields::

    @dataclass(frozen=True)
    class ShardSettings(Settings):
        r: int = setting(3, "copies of each shard", low=1, high=16, env="BORGUSB_SHARD_R")

`borgusb cell run NAME --help` lists them as ``--r N``; a value comes from the
command line (or ``--args-file``), else the environment variable, else the
default. A bad value is refused before the cell binds a port, with the flag,
the accepted range and what was given.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, get_type_hints

S = TypeVar("S", bound="Settings")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class SettingsError(ValueError):
    """A setting's value is missing, of the wrong type or out of range."""


def setting(
    default: Any,
    help: str,
    *,
    low: int | None = None,
    high: int | None = None,
    env: str | None = None,
    size: bool = False,
) -> Any:
    """A field of a `Settings` class: its default, one line of help, bounds, its variable."""
    return dataclasses.field(
        default=default, metadata={"help": help, "low": low, "high": high, "env": env, "size": size}
    )


def parse_size(text: str) -> int:
    """``4G``, ``512M``, ``65536``: a byte count (binary units)."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in _SIZE_UNITS and not t[-1:].isdigit() else ""
    number = t[: len(t) - len(unit)] if unit else t
    if not number.isdigit():
        raise ValueError(f"not a size: {text!r} (e.g. 65536, 512M, 4G)")
    return int(number) * _SIZE_UNITS[unit]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of every cell's settings; the base has none, so a cell without settings needs nothing."""

    cell: ClassVar[str] = "cell"

    @classmethod
    def fields(cls) -> list[dataclasses.Field[Any]]:
        return list(dataclasses.fields(cls))

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One ``--flag`` per field (values stay text here; `from_sources` checks them)."""
        if not cls.fields():
            return
        group = parser.add_argument_group(f"{cls.cell} settings")
        for f in cls.fields():
            meta = f.metadata
            low, high = meta.get("low"), meta.get("high")
            notes = [f"default {_shown(f.default, bool(meta.get('size')))}"]
            if low is not None and high is not None:
                notes.append(f"{low}..{high}")
            elif low is not None:
                notes.append(f"at least {low}")
            elif high is not None:
                notes.append(f"at most {high}")
            if meta.get("env"):
                notes.append(f"env {meta['env']}")
            group.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f"setting_{f.name}",
                default=None,
                metavar=f.name.upper(),
                help=f"{meta.get('help', '')} ({'; '.join(notes)})",
            )

    @classmethod
    def from_sources(
        cls: type[S],
        flags: Mapping[str, Any] | argparse.Namespace | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> S:
        """Flags first, then the environment, then defaults; every value checked."""
        if isinstance(flags, argparse.Namespace):
            flags = {k.removeprefix("setting_"): v for k, v in vars(flags).items() if k.startswith("setting_")}
        flags = flags or {}
        environ = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        unknown = set(flags) - {f.name for f in cls.fields()}
        if unknown:
            raise SettingsError(
                f"{cls.cell} has no setting {sorted(unknown)[0]!r}; "
                f"it has: {', '.join(f.name for f in cls.fields()) or 'none'}"
            )
        for f in cls.fields():
            raw = flags.get(f.name)
            source = "--" + f.name.replace("_", "-")
            if raw is None and f.metadata.get("env"):
                raw, source = environ.get(f.metadata["env"]), f.metadata["env"]
            if raw is None:
                continue
            values[f.name] = _convert(cls.cell, source, hints[f.name], raw, f.metadata)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _shown(value: Any, size: bool) -> str:
    """A default as a person would write it: 4G rather than 4294967296, 'none' for an empty text."""
    if size and isinstance(value, int) and value:
        for unit in ("t", "g", "m", "k"):
            if value % _SIZE_UNITS[unit] == 0:
                return f"{value // _SIZE_UNITS[unit]}{unit.upper()}"
    return "none" if value == "" else str(value)


def _convert(cell: str, source: str, kind: Any, raw: Any, meta: Mapping[str, Any]) -> Any:
    where = f"{cell} {source}"
    if kind is bool or kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "yes", "true", "on"):
            return True
        if text in ("0", "no", "false", "off"):
            return False
        raise SettingsError(f"{where} must be yes or no, not {raw!r}")
    if kind is int or kind == "int":
        try:
            value = raw if isinstance(raw, int) else parse_size(str(raw)) if meta.get("size") else int(str(raw), 10)
        except ValueError:
            raise SettingsError(
                f"{where} must be {'a size' if meta.get('size') else 'an integer'}, not {raw!r}"
            ) from None
        low, high = meta.get("low"), meta.get("high")
        if (low is not None and value < low) or (high is not None and value > high):
            raise SettingsError(f"{where} must be between {low} and {high}, not {value}")
        return value
    if kind is str or kind == "str":
        text = str(raw)
        if len(text) > 4096:
            raise SettingsError(f"{where} is too long")
        return text
    raise SettingsError(f"{where}: settings of type {kind!r} are not supported")
