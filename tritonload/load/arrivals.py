"""Open-loop arrivals: requests sent on a schedule, whatever the server's pace.

A closed-loop user waits for each answer before sending the next, so a slow server quietly
lowers the load it receives and hides its own queueing (coordinated omission). Here each
user follows a schedule of intended send times (constant spacing or Poisson, at
``rate / users`` per second, ``users`` counted over every Locust worker of the run), and
latency counts from the *intended* time.

When the generator cannot keep up (all ``max_in_flight`` slots busy), a send waits for a
slot at most until the next send is due: it then goes out late (counted as ``late``), or is
dropped (counted as ``dropped``). The schedule itself never slows down, so the rate is never
silently lowered. Counts are kept per interval.

``--arrival replay`` takes the schedule from the payload files instead: every entry's
``timestamp`` (milliseconds, as newer perf_analyzers and AIPerf's fixed schedules give them)
is when that very entry is sent, shifted so that the earliest is sent first, at once. The
trace is one schedule for the whole process (`ReplayTrace`): its users take its sends in
time order, each with its own slots, so the trace is played once however many users there
are, and then again, one mean gap after its last send, until the run ends (so a short trace
still gives a steady window). The mix's weights do not apply: the trace says which model's
entry goes when.

A send is *late* when it leaves more than 2 ms after its intended time. Not 1 ms: gevent's
libev loop waits in epoll with millisecond granularity, so a sleep overshoots by 0.64 ms at
the median and by over 1 ms 13% of the time (measured on this 2-core box). With a 1 ms bound,
an idle generator at 200 req/s reported 10% late sends; with 2 ms it reports 0.3–0.4%, which
leaves "late" meaning a real backlog. The overshoot itself stays in the latencies (they count
from the intended time).
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import gevent

from tritonload.core.errors import UsageError
from tritonload.triton.payloads import Payload

ARRIVALS = ("constant", "poisson", "replay")
LATE_AFTER_NS = 2_000_000  # see the module docstring: timers wake up to ~1.2 ms late


@dataclass(frozen=True)
class ArrivalProcess:
    """Intended inter-arrival gaps for one user."""

    rate: float  # requests per second for this user
    kind: str = "poisson"

    def __post_init__(self) -> None:
        if self.kind not in ARRIVALS[:2]:
            raise UsageError(f"bad arrival process {self.kind!r}: expected constant, poisson "
                             "or replay")
        if not self.rate > 0:
            raise UsageError(f"the request rate must be > 0, got {self.rate}")

    def gaps_ns(self, rng: random.Random) -> Iterator[int]:
        """Endless gaps (ns) between intended sends."""
        mean_ns = 1e9 / self.rate
        if self.kind == "constant":
            yield int(rng.random() * mean_ns)  # random phase, so users do not fire in lockstep
            while True:
                yield int(mean_ns)
        while True:
            yield int(rng.expovariate(1.0) * mean_ns)


class ArrivalLedger:
    """Per-interval counts of scheduled, late and dropped sends (shared by a process's users)."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_ns = int(interval_s * 1e9)
        self.counts: dict[int, collections.Counter[str]] = collections.defaultdict(
            collections.Counter)

    def count(self, event: str, wall_ns: int) -> None:
        """Count ``scheduled``, ``late`` or ``dropped`` in the interval holding ``wall_ns``."""
        self.counts[wall_ns // self.interval_ns][event] += 1

    def add_rows(self, rows: list[dict[str, int]]) -> None:
        """Add another ledger's `rows` (a worker's, on the master), interval by interval."""
        for row in rows:
            counter = self.counts[int(row["t_start_ns"]) // self.interval_ns]
            for event in ("scheduled", "late", "dropped"):
                counter[event] += int(row[event])

    def clear(self) -> None:
        """Forget every count (a new test starts)."""
        self.counts.clear()

    def rows(self) -> list[dict[str, int]]:
        """One row per interval: t_start_ns, t_end_ns, scheduled, late, dropped."""
        return [{"t_start_ns": k * self.interval_ns, "t_end_ns": (k + 1) * self.interval_ns,
                 "scheduled": c["scheduled"], "late": c["late"], "dropped": c["dropped"]}
                for k, c in sorted(self.counts.items())]

    def totals(self) -> dict[str, int]:
        """Counts over the whole run."""
        total: collections.Counter[str] = collections.Counter()
        for counter in self.counts.values():
            total.update(counter)
        return {k: total[k] for k in ("scheduled", "late", "dropped")}


def wall_and_perf_now() -> tuple[int, int]:
    """The same instant on both clocks."""
    return time.time_ns(), time.perf_counter_ns()


class ReplayTrace:
    """The payloads' timestamps as one schedule, repeated, shared by a process's users."""

    def __init__(self, payloads: Mapping[str, Payload], models: Iterable[str]) -> None:
        items = []
        for model in sorted(set(models)):
            payload = payloads[model]
            stamps = payload.timestamps
            if stamps is None:
                raise UsageError(f"--arrival replay: {model}'s payload ({payload.source}) has "
                                 "no \"timestamp\" entries to replay")
            for index, stamp in enumerate(stamps):
                if stamp is None:
                    raise UsageError(f"--arrival replay: {payload.source}: entry {index} has "
                                     "no \"timestamp\"; every entry needs one")
                items.append((round(stamp * 1e6), model, index))
        if len(items) < 2:
            raise UsageError("--arrival replay needs at least 2 timestamped entries (a "
                             "schedule has gaps)")
        items.sort()
        first, last = items[0][0], items[-1][0]
        self.items = [(offset - first, model, index) for offset, model, index in items]
        # One mean gap after the last send, the trace starts again.
        self.period_ns = (last - first) * len(items) // (len(items) - 1) or 1
        self.rate = len(items) / (self.period_ns / 1e9)  # mean requests per second
        self.rewind()

    def rewind(self) -> None:
        """Start from the trace's first send, on the next `take` (a new test)."""
        self.taken = 0
        self.start_perf: int | None = None

    def peek_due(self) -> int:
        """When the next send is due (perf_counter ns), without taking it."""
        if self.start_perf is None:
            return time.perf_counter_ns()
        laps, i = divmod(self.taken, len(self.items))
        return self.start_perf + laps * self.period_ns + self.items[i][0]

    def take(self) -> tuple[int, str, int]:
        """The next send: ``(due perf_counter ns, model, entry index)``."""
        if self.start_perf is None:
            self.start_perf = time.perf_counter_ns()
        due = self.peek_due()
        _, model, index = self.items[self.taken % len(self.items)]
        self.taken += 1
        return due, model, index


class OpenLoopSchedule:
    """Drives one user's open-loop sends: its share of the rate, or of the replayed trace."""

    def __init__(self, user: Any, ledger: ArrivalLedger, rate_users: int | None = None,
                 trace: ReplayTrace | None = None) -> None:
        runner = user.environment.runner
        users = max(1, int(rate_users or getattr(runner, "target_user_count", 0) or 1))
        settings = user.settings
        self.user = user
        self.ledger = ledger
        self.trace = trace
        self.wall0, self.perf0 = wall_and_perf_now()
        if trace is None:
            self.gaps = ArrivalProcess(settings.rate / users, settings.arrival).gaps_ns(user.rng)
            self.next_perf = self.perf0 + next(self.gaps)

    def _take(self) -> tuple[int, Any]:
        """The next send's due time, and its prepared request (None: the mix draws one)."""
        if self.trace is None:
            due = self.next_perf
            self.next_perf += next(self.gaps)
            return due, None
        due, model, index = self.trace.take()
        return due, self.user.prepared[model][index]

    def _next_due(self) -> int:
        return self.next_perf if self.trace is None else self.trace.peek_due()

    def run_until(self, deadline_monotonic: float) -> None:
        """Send every request scheduled before the deadline (late, or dropped, if need be)."""
        pool = self.user.pool
        while time.monotonic() < deadline_monotonic:
            intended_perf, prepared = self._take()
            delay_ns = intended_perf - time.perf_counter_ns()
            if delay_ns > 0:
                gevent.sleep(delay_ns / 1e9)
            intended_wall = self.wall0 + (intended_perf - self.perf0)
            self.ledger.count("scheduled", intended_wall)
            if pool.full():
                until_next_s = (self._next_due() - time.perf_counter_ns()) / 1e9
                pool.wait_available(timeout=max(until_next_s, 0.0))
                if pool.full():
                    self.ledger.count("dropped", intended_wall)
                    continue
            if time.perf_counter_ns() - intended_perf > LATE_AFTER_NS:
                self.ledger.count("late", intended_wall)
            pool.spawn(self.user.request, intended_wall, intended_perf, prepared)
