"""The cell kit without a network: settings checked once, handlers collected once, reasons kept."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from borgusb import cells
from borgusb.cells import implemented, spec
from borgusb.cells.kit import Cell, RequestError, Settings, SettingsError, on_broadcast, receptor, setting
from borgusb.cells.kit.handlers import collect
from borgusb.cells.shard.settings import ShardSettings


@dataclass(frozen=True)
class DemoSettings(Settings):
    cell: ClassVar[str] = "demoCell"

    count: int = setting(3, "how many", low=1, high=10, env="DEMO_COUNT")
    room: int = setting(1 << 20, "bytes", low=0, size=True)
    loud: bool = setting(False, "shout")
    name: str = setting("", "a name")


def test_settings_come_from_flags_then_environment_then_defaults() -> None:
    assert DemoSettings.from_sources({}, {}) == DemoSettings()
    assert DemoSettings.from_sources({}, {"DEMO_COUNT": "7"}).count == 7
    got = DemoSettings.from_sources({"count": "2", "room": "512M", "loud": "yes", "name": "x"}, {"DEMO_COUNT": "7"})
    assert (got.count, got.room, got.loud, got.name) == (2, 512 << 20, True, "x")


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"count": "0"}, {}, "demoCell --count must be between 1 and 10, not 0"),
        ({"count": "many"}, {}, "demoCell --count must be an integer, not 'many'"),
        ({}, {"DEMO_COUNT": "11"}, "demoCell DEMO_COUNT must be between 1 and 10, not 11"),
        ({"room": "lots"}, {}, "demoCell --room must be a size, not 'lots'"),
        ({"loud": "perhaps"}, {}, "demoCell --loud must be yes or no, not 'perhaps'"),
        ({"colour": "red"}, {}, "demoCell has no setting 'colour'"),
    ],
)
def test_bad_settings_are_refused_with_what_was_given(flags: dict[str, str], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as err:
        DemoSettings.from_sources(flags, env)
    assert message in str(err.value)


def test_settings_become_documented_flags() -> None:
    parser = argparse.ArgumentParser()
    ShardSettings.add_arguments(parser)
    text = parser.format_help()
    assert "--quota QUOTA" in text and "default 4G" in text and "env BORGUSB_SHARD_QUOTA" in text
    args = parser.parse_args(["--r", "2", "--quota", "1G"])
    got = ShardSettings.from_sources(args, {})
    assert (got.r, got.quota) == (2, 1 << 30)


class Base(Cell):
    @receptor("demo.a")
    async def _a(self, env: Any) -> Any:
        return 1

    @on_broadcast("k1")
    def _k1(self, signer: str, data: dict[str, Any]) -> None: ...


class Derived(Base):
    @receptor("demo.a")  # overrides the base's handler of the same type
    async def _a2(self, env: Any) -> Any:
        return 2

    @receptor("demo.b")
    async def _b(self, env: Any) -> Any:
        return 3


def test_handlers_are_collected_once_per_class_and_subclasses_override() -> None:
    table = collect(Derived)
    assert table.receptors["demo.a"] == "_a2" and table.receptors["demo.b"] == "_b"
    assert table.receptors["cell.status"] == "_r_status"  # the kit's own receptors are inherited
    assert table.broadcasts == {"k1": "_k1"}
    assert collect(Base).receptors["demo.a"] == "_a" and "demo.b" not in collect(Base).receptors
    assert collect(Derived) is table


def test_a_refusal_reason_is_a_short_word() -> None:
    exc = RequestError("quota", "the store is full", 507)
    assert (exc.reason, exc.status, exc.to_json()) == ("quota", 507, {"error": "quota", "detail": "the store is full"})
    with pytest.raises(ValueError):
        RequestError("The store is full!")


def test_the_registry_lists_the_cell_packages_and_refuses_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert implemented()[:3] == ["peerTreeNet", "shardTreeCell", "fStreamCell"] and "serviceMgrCell" in implemented()
    every = cells.specs()  # every DNA row has a package now: take one away to see the wording
    monkeypatch.setattr(cells, "specs", lambda: {k: v for k, v in every.items() if k != "fStreamCell"})
    with pytest.raises(ValueError, match="not available in this version yet"):
        spec("fStreamCell")
    with pytest.raises(ValueError, match="unknown cell type 'nosuchCell'"):
        spec("nosuchCell")
