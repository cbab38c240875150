"""Network time without I/O: four-timestamp estimation, best-by-RTT filter, slewed offset.

The crono cell (cells/crono.py) keeps one clock for the whole network. This
module is its arithmetic, free of sockets and of real time so it can be
tested exhaustively:

* `measure(t1, t2, t3, t4)`: one NTP-style exchange. ``t1``/``t4`` are the
  asker's send/receive times on its *local monotonic* clock, ``t2``/``t3``
  the answerer's receive/send times in *network* time, all integer
  microseconds. The offset ``((t2 - t1) + (t3 - t4)) / 2`` maps the asker's
  monotonic clock to network time; the round trip without the answerer's
  own processing is ``(t4 - t1) - (t3 - t2)``, and the offset is wrong by at
  most half of it (whatever the asymmetry of the two paths).
* `SampleFilter`: keeps the last few samples and picks the one with the
  smallest error bound: ``rtt / 2`` plus the drift that can have accumulated
  since it was taken (`DRIFT_PPM`). A sample delayed by a busy scheduler has
  a long round trip and loses to a quick one.
* `SlewedOffset`: the offset applied to the local monotonic clock, as a pure
  function of monotonic time. Network time never goes backwards: a new
  target offset is reached by slewing at most `MAX_SLEW_PPM` (5 %, so network
  time runs between 0.95x and 1.05x the local clock while it corrects: 1 ms
  takes 20 ms, 100 ms takes 2 s); the exceptions are steps:

  - the first sync (either way: before it the node had no network time,
    only its host clock);
  - the first sync with a *new reference* (the node's tree merged into
    another, or it joined a different tree: that tree's network time is new
    to it) when the difference exceeds `STEP_US`; a smaller one is slewed;
  - a forward correction larger than `STEP_US` (a step forward never makes
    time go backwards).

  A backward correction within one reference is always slewed, however large.
  The root of a tree failing or being swapped does not change the reference
  (the tree id survives a takeover), and the new root keeps its own network
  time, so nothing steps then.

  Steps after the first are bounded, because a time source is a peer and may
  lie (issue 15 item 7): together they may move the clock at most
  `STEP_BUDGET_US` (the envelopes' freshness window) in any `STEP_PERIOD_US`;
  past the budget a correction is slewed instead, refused as a step, counted
  and logged. The one step back (the first sync) cannot make a forgotten
  envelope fresh again: the verifier's freshness floor never goes back (see
  `envelope.Verifier.latest_ms`).
* `NetworkClock`: the thread-safe `Clock` built on those, against
  ``time.monotonic_ns`` so a host clock step changes nothing. It starts at
  the host's wall clock (source ``local``).

Everything on the wire is integer microseconds (canonical JSON has no floats).
"""

from __future__ import annotations

import glob
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

US_PER_S = 1_000_000
MAX_SLEW_PPM = 50_000  # 5 %: the fastest rate at which a correction is applied
STEP_US = 128_000  # larger forward corrections (or any, on a new reference) are steps, as ntpd's step threshold
DRIFT_PPM = 100  # bound on the relative drift of two quartz clocks, for aging samples
FILTER_SIZE = 8
STEP_BUDGET_US = 30 * US_PER_S  # total of the steps after the first sync within STEP_PERIOD_US
STEP_PERIOD_US = 600 * US_PER_S

log = logging.getLogger("borgusb.time")


@dataclass(frozen=True)
class Sample:
    """One exchange: offset (network - local monotonic), round trip, when (local monotonic), all µs."""

    offset_us: int
    rtt_us: int
    at_us: int

    def error_bound_us(self, now_us: int) -> int:
        """Worst-case error of this sample's offset at local monotonic time now_us."""
        age = max(0, now_us - self.at_us)
        return self.rtt_us // 2 + 1 + age * DRIFT_PPM // US_PER_S


class BadExchange(ValueError):
    """The four timestamps cannot come from one real exchange."""


def measure(t1: int, t2: int, t3: int, t4: int) -> Sample:
    """Offset and round trip from one four-timestamp exchange (integer µs)."""
    for t in (t1, t2, t3, t4):
        if not isinstance(t, int) or isinstance(t, bool):
            raise BadExchange("timestamps are integer microseconds")
    if t4 < t1:
        raise BadExchange("the answer arrived before the question left")
    if t3 < t2:
        raise BadExchange("the answerer sent before it received")
    rtt = (t4 - t1) - (t3 - t2)
    if rtt < 0:
        raise BadExchange("the answerer took longer than the whole round trip")
    return Sample(((t2 - t1) + (t3 - t4)) // 2, rtt, t4)


def cristian(t1: int, t_server: int, t4: int) -> int:
    """Cristian's estimate from one exchange with one server timestamp: the baseline."""
    return t_server + (t4 - t1) // 2 - t4


class SampleFilter:
    """The last `size` samples; `best` is the one with the smallest error bound now."""

    def __init__(self, size: int = FILTER_SIZE) -> None:
        self.samples: deque[Sample] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self.samples)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    def clear(self) -> None:
        self.samples.clear()

    def best(self, now_us: int) -> Sample | None:
        if not self.samples:
            return None
        return min(self.samples, key=lambda s: (s.error_bound_us(now_us), -s.at_us))


class SlewedOffset:
    """The offset (network - local monotonic) as a pure function of local monotonic time.

    Between corrections the offset moves linearly from `anchor_offset_us`
    toward `target_us` at `max_slew_ppm` and then stays there, so
    ``m + offset_at(m)`` never decreases (its slope is at least
    ``1 - max_slew_ppm / 1e6``). `slew_to` re-anchors at the current value,
    so the function stays continuous; only `step_to` jumps.
    """

    def __init__(self, offset_us: int, anchor_us: int = 0, max_slew_ppm: int = MAX_SLEW_PPM) -> None:
        if not 0 < max_slew_ppm < US_PER_S:
            raise ValueError("the slew rate must be between 0 and 1e6 ppm")
        self.max_slew_ppm = max_slew_ppm
        self.anchor_us = anchor_us
        self.anchor_offset_us = offset_us
        self.target_us = offset_us

    def offset_at(self, mono_us: int) -> int:
        diff = self.target_us - self.anchor_offset_us
        if diff == 0:
            return self.target_us
        budget = max(0, mono_us - self.anchor_us) * self.max_slew_ppm // US_PER_S
        if diff > 0:
            return self.anchor_offset_us + min(diff, budget)
        return self.anchor_offset_us - min(-diff, budget)

    def remaining_us(self, mono_us: int) -> int:
        """How much correction is still to be slewed (target - current)."""
        return self.target_us - self.offset_at(mono_us)

    def slew_to(self, mono_us: int, target_us: int) -> None:
        mono_us = max(mono_us, self.anchor_us)  # never re-anchor in the past
        self.anchor_offset_us = self.offset_at(mono_us)
        self.anchor_us = mono_us
        self.target_us = target_us

    def step_to(self, mono_us: int, target_us: int) -> None:
        self.anchor_us = max(mono_us, self.anchor_us)
        self.anchor_offset_us = self.target_us = target_us

    def correct(
        self,
        mono_us: int,
        target_us: int,
        *,
        first: bool,
        new_reference: bool = False,
        may_step_us: int | None = None,
    ) -> str:
        """Apply a new target offset by the policy above; returns 'step', 'slew' or 'bounded' (a
        step larger than ``may_step_us``, slewed instead)."""
        diff = target_us - self.offset_at(mono_us)
        if not (first or diff > STEP_US or (new_reference and -diff > STEP_US)):
            self.slew_to(mono_us, target_us)
            return "slew"
        if may_step_us is not None and abs(diff) > may_step_us:
            self.slew_to(mono_us, target_us)
            return "bounded"
        self.step_to(mono_us, target_us)
        return "step"


def _mono_us() -> int:
    return time.monotonic_ns() // 1000


def _wall_us() -> int:
    return time.time_ns() // 1000


class NetworkClock:
    """Network time = local monotonic clock + a slewed offset; a `Clock` (ms) with µs access.

    Starts from the host's wall clock (``source = 'local'``). `correct` feeds
    it a measured offset; `synced` turns true at the first one. Thread-safe,
    and `now_us` never returns less than it did before, except right after
    the first sync (which may step back: before it there was no network time).
    """

    def __init__(
        self,
        *,
        mono: Callable[[], int] = _mono_us,
        wall: Callable[[], int] = _wall_us,
        max_slew_ppm: int = MAX_SLEW_PPM,
    ) -> None:
        self._mono = mono
        self._wall = wall
        m = mono()
        self._off = SlewedOffset(wall() - m, m, max_slew_ppm)
        self._last = 0
        self._lock = threading.Lock()
        self._recent_steps: deque[tuple[int, int]] = deque()  # (mono µs, size µs) within STEP_PERIOD_US
        self.synced = False
        self.epoch = 0  # bumped at every step, so whoever sampled this clock starts afresh
        self.steps = 0
        self.slews = 0
        self.steps_bounded = 0  # steps refused (slewed) past the budget
        self.last_correction_us = 0
        self.last_sync_mono_us: int | None = None
        self.reference: str | None = None  # whose network time this is (the crono tree's id)

    def mono_us(self) -> int:
        return self._mono()

    def now_us(self) -> int:
        with self._lock:
            m = self._mono()
            now = m + self._off.offset_at(m)
            if now < self._last:
                now = self._last
            self._last = now
            return now

    def now_ms(self) -> int:
        return self.now_us() // 1000

    def to_network_us(self, mono_us: int) -> int:
        """The network time that corresponded to a past local monotonic reading."""
        with self._lock:
            return mono_us + self._off.offset_at(mono_us)

    def offset_us(self) -> int:
        """Current offset of network time from local monotonic time."""
        with self._lock:
            return self._off.offset_at(self._mono())

    def offset_from_wall_us(self) -> int:
        """Network time minus the host's wall clock (what the host clock is wrong by)."""
        return self.now_us() - self._wall()

    def remaining_us(self) -> int:
        with self._lock:
            return self._off.remaining_us(self._mono())

    def correct(self, target_offset_us: int, *, mono_us: int | None = None, reference: str | None = None) -> str:
        """Move toward the offset (network - local monotonic) just measured from `reference`'s time."""
        with self._lock:
            m = self._mono() if mono_us is None else mono_us
            first = not self.synced
            new_reference = reference is not None and reference != self.reference
            before = self._off.offset_at(m)
            while self._recent_steps and m - self._recent_steps[0][0] > STEP_PERIOD_US:
                self._recent_steps.popleft()
            budget = None if first else max(0, STEP_BUDGET_US - sum(size for _, size in self._recent_steps))
            how = self._off.correct(m, target_offset_us, first=first, new_reference=new_reference, may_step_us=budget)
            if reference is not None:
                self.reference = reference
            self.last_correction_us = target_offset_us - before
            stepped = self._off.offset_at(m) - before
            if how == "step":
                self.steps += 1
                self.epoch += 1
                if first:
                    self._last = 0  # the one permitted backward move
                else:
                    self._recent_steps.append((m, abs(stepped)))
                    log.warning("network time stepped %+d ms (reference %s)", stepped // 1000, reference)
            else:
                self.slews += 1
            if how == "bounded":
                self.steps_bounded += 1
                log.warning(
                    "network time: a %+d ms step is past the step budget; slewing", self.last_correction_us // 1000
                )
            self.synced = True
            self.last_sync_mono_us = m
            return how

    def mark_synced(self, reference: str | None = None) -> None:
        """This clock is the reference (the tree's root): synced by definition, nothing moves."""
        with self._lock:
            if reference is not None:
                self.reference = reference
            if not self.synced:
                self.synced = True
                self.epoch += 1
            self.last_sync_mono_us = self._mono()


def faketime_library() -> str | None:
    """Path of Debian's libfaketime (package libfaketime), for running processes with a skewed clock."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    return found[0] if found else None


def skewed_command_prefix(skew_s: float) -> list[str]:
    """A command prefix that runs a process whose wall clock is skew_s seconds off.

    ``env LD_PRELOAD=libfaketime`` rather than the ``faketime`` tool, which
    forks: the pid a cluster tracks must be the node process itself. The
    monotonic clock is left real, as on a machine whose wall clock is wrong.
    """
    lib = faketime_library()
    if lib is None:
        raise RuntimeError("libfaketime is not installed (apt-get install faketime)")
    return ["env", f"LD_PRELOAD={lib}", f"FAKETIME={skew_s:+.3f}s", "FAKETIME_DONT_FAKE_MONOTONIC=1"]
