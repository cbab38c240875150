"""The service registry's rules (borgusb/cells/servicemgr/registry.py): plain calls, integer clocks, no I/O."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from borgusb.cells.servicemgr.registry import Entry, Limits, Refused, Registry, statement_digest

OWN_IP = "10.0.0.1"
OWN = "02" + "00" * 32  # this serviceMgr's key
A, B, C = ("02" + f"{i:02x}" * 32 for i in (0xA1, 0xB2, 0xC3))  # other nodes' keys
T0 = 1_700_000_000_000
LIMITS = Limits(local_ttl_ms=3_000, remote_ttl_ms=15_000, future_ms=30_000)


def fields(cell: str = "peerTreeNet", ip: str = "10.0.0.2", **more: Any) -> dict[str, Any]:
    return {"cell": cell, "ip": ip, "ports": [13360, 13361, 13362], "status": "online", "load": {"sent": 1}, **more}


def entry(signer: str, ts: int = T0, **more: Any) -> Entry:
    return Entry.from_statement(signer, ts, fields(**more))


def registry(limits: Limits = LIMITS) -> Registry:
    return Registry(OWN_IP, OWN, limits)


def listed(reg: Registry, now: int = T0) -> set[tuple[str, str, str]]:
    return {(e["cell"], e["ip"], e["node"]) for e in reg.services(now)}


# -- entries: a statement's payload, and the node that signed it ---------------------------


def test_an_entry_is_named_by_its_signer() -> None:
    e = entry(A)
    assert (e.node, e.cell, e.ip, e.ports, e.status, dict(e.load), e.ts) == (
        A,
        "peerTreeNet",
        "10.0.0.2",
        (13360, 13361, 13362),
        "online",
        {"sent": 1},
        T0,
    )
    assert entry(A, node=A) == e  # naming the signer itself is fine


def test_a_statement_naming_another_node_is_refused() -> None:
    with pytest.raises(Refused) as exc:
        entry(A, node=B)
    assert exc.value.reason == "node_mismatch"


@pytest.mark.parametrize(
    "payload",
    [
        "not an object",
        fields(cell=""),
        fields(cell="a" * 65),
        fields(cell="<script>"),
        fields(ip="example.org"),
        fields(ip=5),
        {**fields(), "ports": []},
        {**fields(), "ports": [1, 2, 3, 4]},
        {**fields(), "ports": [0]},
        {**fields(), "ports": [70000]},
        {**fields(), "ports": [True]},
        {**fields(), "ports": "13360"},
        {**fields(), "status": "s" * 17},
        {**fields(), "status": 1},
        {**fields(), "load": []},
        {**fields(), "load": {f"k{i}": i for i in range(17)}},
        {**fields(), "load": {"x": {"nested": 1}}},
        {**fields(), "load": {"": 1}},
        {**fields(), "load": {"x": "v" * 65}},
    ],
)
def test_malformed_statements_are_refused(payload: Any) -> None:
    with pytest.raises(Refused) as exc:
        Entry.from_statement(A, T0, payload)
    assert exc.value.reason == "malformed"


def test_a_statement_that_is_not_canonical_json_has_no_digest() -> None:
    assert statement_digest({"a": 1}) == statement_digest({"a": 1}) != statement_digest({"a": 2})
    with pytest.raises(Refused) as exc:
        statement_digest({"a": 1.5})
    assert exc.value.reason == "malformed"


# -- local announcements: only from this machine ------------------------------------------


def test_announcements_and_withdrawals_come_only_from_this_machines_address() -> None:
    reg = registry()
    for source in ("10.0.0.9", "127.0.0.1", None):
        with pytest.raises(Refused) as exc:
            reg.announce(T0, source, A, entry(A), {"sig": "x"})
        assert exc.value.reason == "not_local"
        with pytest.raises(Refused):
            reg.withdraw(source, A, "peerTreeNet", "10.0.0.2")
    assert reg.refused["not_local"] == 6 and not reg.local and not reg.changed
    reg.announce(T0, OWN_IP, A, entry(A), {"sig": "x"})
    assert listed(reg) == {("peerTreeNet", "10.0.0.2", A)} and reg.changed


def test_a_cell_announces_only_its_own_statement() -> None:
    reg = registry()
    with pytest.raises(Refused) as exc:
        reg.announce(T0, OWN_IP, B, entry(A), {})
    assert exc.value.reason == "node_mismatch" and reg.refused["node_mismatch"] == 1


def test_only_the_announcing_node_withdraws_its_entry() -> None:
    reg = registry()
    reg.announce(T0, OWN_IP, A, entry(A), {})
    reg.share(T0)
    with pytest.raises(Refused) as exc:
        reg.withdraw(OWN_IP, B, "peerTreeNet", "10.0.0.2")
    assert exc.value.reason == "not_owner" and reg.local and not reg.changed
    reg.withdraw(OWN_IP, A, "peerTreeNet", "nothing here")  # unknown: nothing to do
    reg.withdraw(OWN_IP, A, "peerTreeNet", "10.0.0.2")
    assert not reg.local and reg.changed


def test_a_restarted_cell_with_a_new_key_replaces_its_old_entry() -> None:
    reg = registry()
    reg.announce(T0, OWN_IP, A, entry(A), {})
    reg.share(T0)
    reg.announce(T0 + 10, OWN_IP, B, entry(B), {})
    assert listed(reg) == {("peerTreeNet", "10.0.0.2", B)} and reg.changed


def test_local_changes_are_shared_at_once_load_waits_and_silence_expires() -> None:
    reg = registry()
    reg.announce(T0, OWN_IP, A, entry(A), {"n": 1})
    assert reg.share(T0) == [{"n": 1}] and not reg.changed
    reg.announce(T0 + 1_000, OWN_IP, A, entry(A, T0 + 1_000, load={"sent": 9}), {"n": 2})
    assert not reg.changed  # only a load figure: the next refresh carries it
    reg.announce(T0 + 2_000, OWN_IP, A, entry(A, T0 + 2_000, status="joining"), {"n": 3})
    assert reg.changed and reg.share(T0 + 2_000) == [{"n": 3}]
    reg.expire(T0 + 5_000)
    assert reg.local and not reg.changed  # 3 s after the last announcement: still there
    reg.expire(T0 + 5_001)
    assert not reg.local and reg.changed and reg.share(T0 + 5_001) == []


def test_local_entries_are_bounded() -> None:
    reg = registry(Limits(max_local=2))
    reg.announce(T0, OWN_IP, A, entry(A, cell="a"), {})
    reg.announce(T0, OWN_IP, A, entry(A, cell="b"), {})
    with pytest.raises(Refused) as exc:
        reg.announce(T0, OWN_IP, A, entry(A, cell="c"), {})
    assert exc.value.reason == "registry_full"
    reg.announce(T0 + 1, OWN_IP, A, entry(A, T0 + 1, cell="b"), {})  # a known entry still refreshes


# -- tables: one per origin, each named by the key that signed it ---------------------------


def test_a_table_naming_another_origin_is_refused() -> None:
    reg = registry()
    with pytest.raises(Refused) as exc:
        reg.table_statements(A, {"origin": B, "entries": []})
    assert exc.value.reason == "origin_mismatch" and reg.refused["origin_mismatch"] == 1
    assert reg.table_statements(A, {"origin": A, "ip": "10.0.0.2", "entries": [1]}) == ("10.0.0.2", [1])
    assert reg.table_statements(A, {"entries": []}) == ("", [])  # no origin field: the signer's
    assert reg.table_statements(OWN, {"origin": OWN, "entries": []}) is None  # our own, back again


@pytest.mark.parametrize("data", ["x", {"entries": "x"}, {"entries": None}])
def test_malformed_tables_are_refused(data: Any) -> None:
    with pytest.raises(Refused) as exc:
        registry().table_statements(A, data)
    assert exc.value.reason == "malformed"


def test_a_table_holds_a_bounded_number_of_entries() -> None:
    reg = registry(Limits(max_per_origin=3))
    with pytest.raises(Refused) as exc:
        reg.table_statements(A, {"entries": [{}] * 4})
    assert exc.value.reason == "too_many_entries"


def test_a_table_never_replaces_another_origins() -> None:
    reg = registry()
    reg.accept_table(T0, A, "10.0.0.2", [entry(A)])
    reg.accept_table(T0, B, "10.0.0.3", [entry(B, ip="10.0.0.3")])
    reg.accept_table(T0 + 1, C, "10.0.0.2", [])  # an empty table from another key erases nothing
    assert listed(reg, T0 + 1) == {("peerTreeNet", "10.0.0.2", A), ("peerTreeNet", "10.0.0.3", B)}
    reg.accept_table(T0 + 2, A, "10.0.0.2", [])  # the origin itself: its cells have stopped
    assert listed(reg, T0 + 2) == {("peerTreeNet", "10.0.0.3", B)}


def test_an_entry_for_someone_elses_address_never_hides_theirs() -> None:
    reg = registry()
    reg.accept_table(T0, A, "10.0.0.2", [entry(A, ip="10.0.0.2")])
    reg.accept_table(T0 + 5, C, "10.0.0.9", [entry(C, T0 + 5, ip="10.0.0.2")])  # C claims A's address
    assert listed(reg, T0 + 5) == {("peerTreeNet", "10.0.0.2", A), ("peerTreeNet", "10.0.0.2", C)}
    reg.announce(T0 + 6, OWN_IP, B, entry(B, T0 + 6, ip="10.0.0.2"), {})  # nor does a local entry
    assert len(listed(reg, T0 + 6)) == 3


def test_a_replayed_statement_dies_when_its_cell_signed_it_15s_ago() -> None:
    reg = registry()
    stale = entry(A, T0)
    reg.accept_table(T0 + 2_000, A, "10.0.0.2", [stale])
    reg.accept_table(T0 + 14_000, C, "10.0.0.9", [stale])  # C keeps relaying A's old statement
    reg.accept_table(T0 + 14_000, A, "10.0.0.2", [])  # A's cell stopped
    assert listed(reg, T0 + 15_000) == {("peerTreeNet", "10.0.0.2", A)}
    assert listed(reg, T0 + 15_001) == set() and not reg.remote
    reg.accept_table(T0 + 15_001, C, "10.0.0.9", [stale])
    assert reg.refused["expired"] == 1 and listed(reg, T0 + 15_001) == set()


def test_statements_dated_too_far_ahead_are_refused() -> None:
    reg = registry()
    reg.accept_table(T0, A, "", [entry(A, T0 + 30_000), entry(A, T0 + 30_001, cell="x")])
    assert listed(reg) == {("peerTreeNet", "10.0.0.2", A)} and reg.refused["future_dated"] == 1


def test_the_newest_statement_of_a_cell_is_listed_once() -> None:
    reg = registry()
    reg.accept_table(T0, A, "a", [entry(A, T0 - 100, status="old"), entry(A, T0, status="new")])
    reg.accept_table(T0, C, "c", [entry(A, T0 - 50, status="relayed")])
    [only] = reg.services(T0)
    assert only["status"] == "new" and only["via"] == "a" and reg.remote_entries() == 2


def test_listings_show_the_entry_the_origin_and_the_statements_age() -> None:
    reg = registry()
    reg.accept_table(T0, A, "10.0.0.2", [entry(A, T0 - 700)])
    reg.announce(T0, OWN_IP, B, entry(B, T0 - 5, cell="serviceMgrCell", ip=OWN_IP), {})
    assert reg.services(T0, "peerTreeNet") == [
        {
            "cell": "peerTreeNet",
            "ip": "10.0.0.2",
            "ports": [13360, 13361, 13362],
            "status": "online",
            "load": {"sent": 1},
            "node": A,
            "via": "10.0.0.2",
            "age_ms": 700,
        }
    ]
    assert [e["via"] for e in reg.services(T0, "serviceMgrCell")] == [OWN_IP]


# -- bounds: a flood of keys refuses newcomers and evicts nobody -----------------------------


def test_origins_are_bounded_and_the_listed_ones_keep_refreshing() -> None:
    reg = registry(Limits(max_origins=2))
    reg.accept_table(T0, A, "", [entry(A)])
    reg.accept_table(T0, B, "", [entry(B)])
    with pytest.raises(Refused) as exc:
        reg.accept_table(T0, C, "", [entry(C)])
    assert exc.value.reason == "registry_full"
    reg.accept_table(T0 + 1, A, "", [entry(A, T0 + 1)])  # a listed origin still refreshes
    reg.accept_table(T0 + 1, C, "", [])  # an empty table holds nothing: not refused
    assert {n for _, _, n in listed(reg, T0 + 1)} == {A, B}
    reg.accept_table(T0 + 15_002, B, "", [entry(B, T0 + 15_002)])
    reg.accept_table(T0 + 15_002, C, "", [entry(C, T0 + 15_002)])  # A expired: room again
    assert {n for _, _, n in listed(reg, T0 + 15_002)} == {B, C}


def test_remote_entries_are_bounded_in_all() -> None:
    reg = registry(Limits(max_remote=3))
    reg.accept_table(T0, A, "", [entry(A, cell="a"), entry(A, cell="b")])
    with pytest.raises(Refused) as exc:
        reg.accept_table(T0, B, "", [entry(B, cell="a"), entry(B, cell="b")])
    assert exc.value.reason == "registry_full"
    reg.accept_table(T0, B, "", [entry(B)])
    reg.accept_table(T0 + 1, A, "", [entry(A, T0 + 1, cell="c"), entry(A, T0 + 1, cell="d")])  # a replacement
    assert reg.remote_entries() == 3 and len(listed(reg, T0 + 1)) == 3


def test_verified_statements_are_remembered_within_a_bound() -> None:
    reg = registry(Limits(max_remote=2, max_local=1))
    for i in range(4):
        reg.remember(bytes([i]), entry(A, T0 + i))
    assert reg.known(b"\x00") is None and reg.known(b"\x01") == entry(A, T0 + 1)
    reg.remember(b"\x09", entry(B))  # b"\x01" was used last: b"\x02" goes
    assert reg.known(b"\x02") is None and reg.known(b"\x01") is not None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([A, B, C, OWN]),  # who signed the table
            st.lists(st.tuples(st.sampled_from([A, B, C]), st.sampled_from("abcd"), st.integers(-20_000, 35_000))),
            st.integers(0, 4_000),  # time passing
        ),
        max_size=30,
    )
)
def test_every_listed_remote_entry_came_from_its_origins_latest_table_within_the_bounds(ops: list) -> None:
    limits = Limits(max_per_origin=5, max_origins=2, max_remote=6)
    reg = registry(limits)
    now, latest = T0, {}
    for origin, made, dt in ops:
        now += dt
        entries = [entry(node, now + age, cell=cell) for node, cell, age in made[: limits.max_per_origin]]
        if reg.table_statements(origin, {"entries": entries}) is None:
            continue
        try:
            reg.accept_table(now, origin, "", entries)
        except Refused as exc:
            assert exc.reason == "registry_full"
            continue
        latest[origin] = {e.key for e in entries}
        reg.expire(now)
        assert len(reg.remote) <= limits.max_origins and reg.remote_entries() <= limits.max_remote
        for held_origin, table in reg.remote.items():
            assert {e.key for e in table.entries} <= latest[held_origin]
            assert all(now - e.ts <= limits.remote_ttl_ms for e in table.entries)
        assert reg.remote_entries() == sum(len(t.entries) for t in reg.remote.values())
