"""The crono arithmetic without I/O: four-timestamp estimate, best-by-RTT filter, slew, monotonicity."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from borgusb import timesync as ts
from borgusb.timesync import BadExchange, NetworkClock, Sample, SampleFilter, SlewedOffset, measure

US = 1_000_000
EPOCH_US = 1_764_000_000 * US

offsets = st.integers(-3600 * US, 3600 * US)
delays = st.integers(0, 200_000)


# ------------------------------------------------------------------ measure


def test_symmetric_exchange_gives_the_exact_offset() -> None:
    # asker's monotonic clock at 1000 s, network time 5 s ahead of it + 1.7 ms, 300 µs each way, 40 µs processing
    theta = EPOCH_US + 1_700
    t1 = 1000 * US
    t2 = t1 + 300 + theta
    t3 = t2 + 40
    t4 = t3 - theta + 300
    s = measure(t1, t2, t3, t4)
    assert s.offset_us == theta
    assert s.rtt_us == 600
    assert s.at_us == t4


@given(theta=offsets, d_out=delays, d_back=delays, proc=st.integers(0, 50_000), t1=st.integers(0, 10**12))
def test_error_is_at_most_half_the_round_trip(theta: int, d_out: int, d_back: int, proc: int, t1: int) -> None:
    t2 = t1 + d_out + theta
    t3 = t2 + proc
    t4 = t3 - theta + d_back
    s = measure(t1, t2, t3, t4)
    assert s.rtt_us == d_out + d_back
    assert abs(s.offset_us - theta) <= s.rtt_us / 2 + 1
    assert abs(s.offset_us - theta) < s.error_bound_us(s.at_us) + 1


@pytest.mark.parametrize("t", [(10, 5, 6, 9), (10, 6, 5, 20), (0, 0, 100, 50), (1.0, 2, 3, 4), (True, 2, 3, 4)])
def test_impossible_exchanges_are_refused(t: tuple) -> None:
    with pytest.raises(BadExchange):
        measure(*t)


def test_cristian_baseline_is_offset_of_one_server_timestamp() -> None:
    # server time = asker + 1000; 100 µs out, 300 µs back: Cristian's RTT/2 assumption is off by 100
    t1 = 0
    t_server = t1 + 100 + 1000
    t4 = 400
    assert ts.cristian(t1, t_server, t4) == 1000 - 100


# ------------------------------------------------------------------ filter


def test_filter_keeps_the_best_by_round_trip() -> None:
    f = SampleFilter(size=4)
    assert f.best(0) is None
    for off, rtt in [(500, 2_000), (120, 150), (900, 5_000)]:
        f.add(Sample(off, rtt, 1_000))
    assert f.best(1_000).offset_us == 120
    # only the last 4 survive: the good sample is pushed out by worse ones
    for _ in range(4):
        f.add(Sample(700, 3_000, 2_000))
    assert f.best(2_000).offset_us == 700
    f.clear()
    assert len(f) == 0


def test_old_samples_age_out_against_fresh_ones() -> None:
    f = SampleFilter()
    f.add(Sample(100, 200, 0))  # excellent but old
    f.add(Sample(150, 1_000, 100 * US))  # fresh, 1 ms round trip
    # after 100 s, the old one's bound is 100 + 100 s * 100 ppm = 10.1 ms > 0.5 ms
    assert f.best(100 * US).offset_us == 150
    assert f.best(1_000).offset_us == 100


@given(
    st.lists(
        st.tuples(st.integers(-(10**9), 10**9), st.integers(0, 10**6), st.integers(0, 10**7)), min_size=1, max_size=30
    )
)
def test_best_has_the_smallest_error_bound(samples: list[tuple[int, int, int]]) -> None:
    f = SampleFilter(size=8)
    for off, rtt, at in samples:
        f.add(Sample(off, rtt, at))
    now = 10**7
    best = f.best(now)
    assert best in f.samples
    assert all(best.error_bound_us(now) <= s.error_bound_us(now) for s in f.samples)


# ------------------------------------------------------------------ slew


def test_slew_respects_the_maximum_rate_and_reaches_the_target() -> None:
    o = SlewedOffset(0, 0)
    o.slew_to(0, -10_000)  # 10 ms back
    assert o.offset_at(0) == 0
    # 5 %: 1 ms of correction per 20 ms of local time
    assert o.offset_at(20_000) == -1_000
    assert o.offset_at(100_000) == -5_000
    assert o.offset_at(200_000) == -10_000
    assert o.offset_at(10**9) == -10_000
    assert o.remaining_us(100_000) == -5_000


def test_first_sync_steps_and_later_corrections_slew() -> None:
    o = SlewedOffset(0, 0)
    assert o.correct(10, -5 * US, first=True) == "step"
    assert o.offset_at(10) == -5 * US
    assert o.correct(20, -5 * US - 3_000, first=False) == "slew"  # backward: slewed
    assert o.correct(30, -5 * US + 50_000, first=False) == "slew"  # small forward: slewed
    assert o.correct(40, -5 * US + 500_000, first=False) == "step"  # large forward: stepped
    assert o.offset_at(40) == -5 * US + 500_000
    assert o.correct(50, -10 * US, first=False) == "slew"  # a large backward correction is never a step


@settings(max_examples=300)
@given(
    start=offsets,
    events=st.lists(
        st.tuples(st.integers(0, 3 * US), st.one_of(st.none(), offsets, st.integers(-200_000, 200_000))),
        min_size=1,
        max_size=40,
    ),
)
def test_network_time_never_goes_backwards_after_first_sync(start: int, events: list) -> None:
    """Any sequence of corrections at any times: local + offset never decreases, rate stays bounded."""
    o = SlewedOffset(start, 0)
    o.correct(0, start, first=True)
    m = 0
    last = m + o.offset_at(m)
    for dt, target in events:
        # check a few points inside the interval too
        for frac in (1, 2, 4):
            mm = m + dt * frac // 4
            now = mm + o.offset_at(mm)
            assert now >= last
            last = now
        prev_off, prev_m = o.offset_at(m), m
        m += dt
        off = o.offset_at(m)
        assert abs(off - prev_off) <= (m - prev_m) * ts.MAX_SLEW_PPM // US + 1
        if target is not None:
            t = o.target_us + target if abs(target) <= 200_000 else target
            how = o.correct(m, t, first=False)
            now = m + o.offset_at(m)
            assert now >= last
            if how == "slew":
                assert o.offset_at(m) == off  # slewing does not move the present
            last = now


# ------------------------------------------------------------------ NetworkClock


class FakeTime:
    def __init__(self) -> None:
        self.mono = 50 * US
        self.wall = EPOCH_US

    def tick(self, us: int) -> None:
        self.mono += us
        self.wall += us


def test_network_clock_starts_from_the_host_clock_and_steps_once() -> None:
    t = FakeTime()
    c = NetworkClock(mono=lambda: t.mono, wall=lambda: t.wall)
    assert c.now_us() == EPOCH_US and not c.synced
    assert c.offset_from_wall_us() == 0
    t.tick(1_000)
    # first sync: network time is 4 s behind this host: a step back, allowed once
    assert c.correct(t.wall - 4 * US - t.mono) == "step"
    assert c.synced and c.epoch == 1
    assert c.now_us() == t.wall - 4 * US
    assert c.offset_from_wall_us() == -4 * US
    before = c.now_us()
    # later: 2 ms further back is slewed; time keeps moving forward
    assert c.correct(c.offset_us() - 2_000) == "slew"
    seen = [before]
    for _ in range(100):
        t.tick(1_000)
        seen.append(c.now_us())
    assert seen == sorted(seen)
    assert c.offset_from_wall_us() == -4 * US - 2_000  # 100 ms at 5 % covers 2 ms
    assert c.epoch == 1 and c.steps == 1 and c.slews == 1


def test_network_clock_ignores_host_clock_steps() -> None:
    t = FakeTime()
    c = NetworkClock(mono=lambda: t.mono, wall=lambda: t.wall)
    c.correct(c.offset_us())
    a = c.now_us()
    t.wall -= 3600 * US  # someone sets the host clock back an hour
    t.mono += 10
    assert c.now_us() == a + 10


def test_network_clock_now_us_never_decreases_even_if_asked_with_stale_anchor() -> None:
    t = FakeTime()
    c = NetworkClock(mono=lambda: t.mono, wall=lambda: t.wall)
    c.correct(c.offset_us())
    t.tick(500)
    a = c.now_us()
    c.correct(c.offset_us() - 100_000, mono_us=t.mono - 400)  # an anchor slightly in the past
    assert c.now_us() >= a
    assert c.now_ms() == c.now_us() // 1000


def test_mark_synced_is_the_reference_and_moves_nothing() -> None:
    t = FakeTime()
    c = NetworkClock(mono=lambda: t.mono, wall=lambda: t.wall)
    c.mark_synced()
    c.mark_synced()
    assert c.synced and c.epoch == 1 and c.steps == 0
    assert c.now_us() == t.wall


def test_skewed_command_prefix_uses_env_so_the_pid_is_the_node() -> None:
    if ts.faketime_library() is None:
        pytest.skip("libfaketime not installed")
    prefix = ts.skewed_command_prefix(-2.5)
    assert prefix[0] == "env" and "FAKETIME=-2.500s" in prefix


def test_crono_client_reports_its_source() -> None:
    from borgusb.cells.crono.client import CronoClient

    c = CronoClient("127.0.0.1", peers=None, node_key="", stale_ms=3000)  # type: ignore[arg-type]
    assert c.describe()["source"] == "local"
    c.correct(c.offset_us() + 5 * US)
    c.last_ok_mono_us = c.mono_us()
    d = c.describe()
    assert d["source"] == "crono" and 4_990 <= d["offset_ms"] <= 5_000 and d["age_ms"] >= 0
    c.last_ok_mono_us = c.mono_us() - 4 * US
    assert c.describe()["source"] == "last-offset"


def test_a_new_reference_steps_only_for_large_differences() -> None:
    t = FakeTime()
    c = NetworkClock(mono=lambda: t.mono, wall=lambda: t.wall)
    c.mark_synced("tree-a")  # the root of tree a
    assert c.reference == "tree-a" and c.epoch == 1
    off = c.offset_us()
    # within tree a, 3 s back is slewed, never stepped
    assert c.correct(off - 3 * US, reference="tree-a") == "slew"
    # tree a merges into tree b, whose time is 3 s behind: a new reference, a step
    c2 = NetworkClock(mono=lambda: t.mono, wall=lambda: t.wall)
    c2.mark_synced("tree-a")
    assert c2.correct(off - 3 * US, reference="tree-b") == "step"
    assert c2.reference == "tree-b" and c2.epoch == 2
    # back to a (say it founded its own and merged again) 50 µs away: slewed, time keeps going forward
    a = c2.now_us()
    assert c2.correct(c2.offset_us() - 50, reference="tree-c") == "slew"
    t.tick(1)
    assert c2.now_us() >= a


# ------------------------------------------------------------------ a lying time source (issue 15 item 7)


def synced_clock(t: FakeTime) -> NetworkClock:
    c = NetworkClock(mono=lambda: t.mono, wall=lambda: t.wall)
    assert c.correct(c.offset_us()) == "step"  # the first sync
    return c


def test_a_source_cannot_step_the_clock_an_hour_forward() -> None:
    """Before the budget, a parent stepped its child forward by any amount at any time."""
    t = FakeTime()
    c = synced_clock(t)
    before = c.now_us()
    assert c.correct(c.offset_us() + 3600 * US) == "bounded"
    assert c.steps_bounded == 1 and c.steps == 1
    t.tick(1_000_000)
    assert c.now_us() - before <= 1_000_000 * 105 // 100 + 1  # only slewed, at most 5 % faster


def test_later_steps_share_one_budget_per_period() -> None:
    t = FakeTime()
    c = synced_clock(t)
    assert c.correct(c.offset_us() + 20 * US) == "step"
    assert c.correct(c.offset_us() + 20 * US) == "bounded"  # 40 s within ten minutes: past the 30 s budget
    assert c.correct(c.offset_us() + 5 * US) in ("step", "bounded")
    t.tick(ts.STEP_PERIOD_US + 1)
    assert c.correct(c.offset_us() + 20 * US) == "step"  # a new period


def test_a_clock_stepped_back_never_makes_a_forgotten_envelope_fresh_again() -> None:
    """The attack: a message accepted, then forgotten by the replay cache once stale, then the
    first network-time sync steps the clock back a minute: the message used to be fresh again."""
    from borgusb import envelope
    from borgusb.keys import SigningKey

    t = FakeTime()
    clock = NetworkClock(mono=lambda: t.mono, wall=lambda: t.wall)
    verifier = envelope.Verifier(clock)
    captured = envelope.sign_bytes(SigningKey.generate(), "app.test", {}, clock)
    verifier.verify(captured)
    t.tick(60 * US)
    verifier.verify(envelope.sign_bytes(SigningKey.generate(), "app.test", {}, clock))  # the cache forgets it
    assert verifier.replay.entries() == 1
    assert clock.correct(clock.offset_us() - 60 * US) == "step"  # the first sync: a minute back
    with pytest.raises(envelope.Stale):
        verifier.verify(captured)
    # and the network's own fresh messages are still taken after a step back within the window
    t2 = FakeTime()
    clock2 = NetworkClock(mono=lambda: t2.mono, wall=lambda: t2.wall)
    verifier2 = envelope.Verifier(clock2)
    verifier2.verify(envelope.sign_bytes(SigningKey.generate(), "app.test", {}, clock2))
    assert clock2.correct(clock2.offset_us() - 20 * US) == "step"
    assert verifier2.verify(envelope.sign_bytes(SigningKey.generate(), "app.test", {}, clock2)).type
