"""The PeerTree simulator's figures on a 10,000-node tree."""

from __future__ import annotations

import json

from borgusb.tree import sim


def test_small_run_figures() -> None:
    res = sim.run_sim(10_000, 10, fail_rate=0.01, storm=500, seed=1)
    json.dumps(res)
    assert res["depth"] == 4 and res["broadcast_hops"] == 4
    assert res["broadcast_exactly_once"]
    # A join in a storm costs no more than a lone join (it shares the root's batch messages).
    assert res["msgs_per_join_in_storm"] <= res["msgs_per_single_join"]
    assert res["msgs_per_join_in_storm"] < 5
    assert res["msgs_per_single_join"] <= 4 + 10  # join, forward, assign, children + k replica deltas
    assert res["failed"] == 105
    assert res["consistent_after_repair"] and res["broadcast_ok_after_repair"]
    assert res["size_after_repair"] == res["size"] - res["failed"]
    assert res["msgs_per_repair"] < 20


def test_deterministic() -> None:
    a = sim.run_sim(300, 3, fail_rate=0.1, storm=20, seed=7)
    b = sim.run_sim(300, 3, fail_rate=0.1, storm=20, seed=7)
    for key in ("seconds", "build_seconds"):
        a.pop(key), b.pop(key)
    assert a == b


def test_cli_json_and_table(capsys) -> None:  # type: ignore[no-untyped-def]
    assert sim.main(["--nodes", "200", "--children", "4", "--storm", "10", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["size"] == 211 and res["depth"] == 4
    assert sim.main(["--nodes", "50", "--children", "3"]) == 0
    assert "broadcast_hops" in capsys.readouterr().out
