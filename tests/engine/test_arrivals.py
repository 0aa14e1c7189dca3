"""Open-loop arrivals: the gap generators, the per-interval ledger, one user's schedule."""

from __future__ import annotations

import itertools
import random
import statistics
import time
from types import SimpleNamespace

import gevent
import gevent.event
import pytest
from gevent.pool import Pool

from tritonload.core.errors import UsageError
from tritonload.load.arrivals import ArrivalLedger, ArrivalProcess, OpenLoopSchedule

S = 1_000_000_000


# -- ArrivalProcess ------------------------------------------------------------------------


def test_constant_gaps_are_exact_after_a_random_phase():
    gaps = ArrivalProcess(rate=40.0, kind="constant").gaps_ns(random.Random(3))
    phase = next(gaps)
    assert 0 <= phase < 25_000_000
    assert list(itertools.islice(gaps, 1000)) == [25_000_000] * 1000


def test_constant_phase_differs_between_users():
    process = ArrivalProcess(rate=10.0, kind="constant")
    phases = {next(process.gaps_ns(random.Random(seed))) for seed in range(20)}
    assert len(phases) == 20  # users do not fire in lockstep


def test_poisson_gaps_have_the_mean_and_spread_of_an_exponential():
    # 20,000 exponential gaps: the mean's standard error is 1/sqrt(20000) = 0.7% of the mean,
    # so 3% is over 4 standard errors; the seed makes the draw fixed anyway.
    rate = 250.0
    gaps = list(itertools.islice(ArrivalProcess(rate).gaps_ns(random.Random(42)), 20_000))
    mean_ns = 1e9 / rate
    assert statistics.fmean(gaps) == pytest.approx(mean_ns, rel=0.03)
    assert statistics.pstdev(gaps) == pytest.approx(mean_ns, rel=0.05)  # exponential: sd = mean
    assert min(gaps) >= 0 and len(set(gaps)) > 19_000


def test_poisson_gaps_are_reproducible_from_the_seed():
    process = ArrivalProcess(100.0, "poisson")
    first = list(itertools.islice(process.gaps_ns(random.Random(9)), 50))
    assert first == list(itertools.islice(process.gaps_ns(random.Random(9)), 50))
    assert first != list(itertools.islice(process.gaps_ns(random.Random(10)), 50))


@pytest.mark.parametrize("rate, kind, fragment", [
    (10.0, "uniform", "bad arrival process 'uniform'"),
    (0.0, "poisson", "rate must be > 0"),
    (-5.0, "constant", "rate must be > 0"),
    (float("nan"), "constant", "rate must be > 0"),
])
def test_bad_arrival_settings_are_usage_errors(rate, kind, fragment):
    with pytest.raises(UsageError, match=fragment):
        ArrivalProcess(rate, kind)


# -- ArrivalLedger -------------------------------------------------------------------------


def test_ledger_counts_per_interval():
    ledger = ArrivalLedger(interval_s=0.5)
    base = 1_700_000_000 * S  # a whole number of half-seconds
    for offset_ms, event in [(0, "scheduled"), (499, "scheduled"), (499, "late"),
                             (500, "scheduled"), (1700, "scheduled"), (1700, "dropped"),
                             (1999, "scheduled"), (1999, "dropped")]:
        ledger.count(event, base + offset_ms * 1_000_000)
    half = S // 2
    assert ledger.rows() == [  # sorted by interval; intervals with nothing counted are absent
        {"t_start_ns": base, "t_end_ns": base + half, "scheduled": 2, "late": 1, "dropped": 0},
        {"t_start_ns": base + half, "t_end_ns": base + S, "scheduled": 1, "late": 0,
         "dropped": 0},
        {"t_start_ns": base + 3 * half, "t_end_ns": base + 2 * S, "scheduled": 2, "late": 0,
         "dropped": 2},
    ]
    assert ledger.totals() == {"scheduled": 5, "late": 1, "dropped": 2}


def test_ledger_rows_are_sorted_whatever_the_counting_order():
    ledger = ArrivalLedger()
    for second in (5, 2, 9, 2):
        ledger.count("scheduled", second * S + 1)
    assert [r["t_start_ns"] for r in ledger.rows()] == [2 * S, 5 * S, 9 * S]
    assert [r["scheduled"] for r in ledger.rows()] == [2, 1, 1]


def test_ledger_clear_forgets_everything():
    ledger = ArrivalLedger()
    ledger.count("scheduled", S)
    ledger.count("dropped", 3 * S)
    ledger.clear()
    assert ledger.rows() == []
    assert ledger.totals() == {"scheduled": 0, "late": 0, "dropped": 0}
    ledger.count("late", S)
    assert ledger.totals() == {"scheduled": 0, "late": 1, "dropped": 0}


# -- OpenLoopSchedule, with real gevent pools and a plain object as the user ---------------


class OpenUser:
    """What `OpenLoopSchedule` reads of a Locust user, and a ``request`` that logs its call."""

    def __init__(self, rate: float, pool_size: int, users: int = 1,
                 hold: gevent.event.Event | None = None) -> None:
        runner = SimpleNamespace(target_user_count=users)
        self.environment = SimpleNamespace(runner=runner)
        self.settings = SimpleNamespace(rate=rate, arrival="constant")
        self.rng = random.Random(1)
        self.pool = Pool(pool_size)
        self.hold = hold
        self.sent: list[tuple[int, int]] = []  # (intended wall ns, intended perf ns)

    def request(self, intended_start_ns: int, intended_perf_ns: int, prepared=None) -> None:
        self.sent.append((intended_start_ns, intended_perf_ns))
        if self.hold is not None:
            self.hold.wait()


def test_schedule_sends_each_user_its_share_on_exact_times():
    ledger = ArrivalLedger()
    user = OpenUser(rate=400.0, pool_size=100, users=4)  # 100/s for this user: 10 ms apart
    schedule = OpenLoopSchedule(user, ledger)
    first = schedule.next_perf
    schedule.run_until(time.monotonic() + 0.3)
    user.pool.join(timeout=5)
    n = len(user.sent)
    assert n >= 10  # 0.3 s at 100/s is ~30, whatever the machine's load
    # Intended times follow the schedule, not the sends: exactly 10 ms apart, none skipped.
    assert [perf for _, perf in user.sent] == [first + k * 10_000_000 for k in range(n)]
    assert schedule.next_perf == first + n * 10_000_000
    assert [wall - perf for wall, perf in user.sent] == [schedule.wall0 - schedule.perf0] * n
    assert ledger.totals()["scheduled"] == n and ledger.totals()["dropped"] == 0


def test_schedule_drops_instead_of_slowing_down_when_slots_are_busy():
    hold = gevent.event.Event()
    ledger = ArrivalLedger()
    user = OpenUser(rate=200.0, pool_size=1, hold=hold)  # the one slot never frees up
    schedule = OpenLoopSchedule(user, ledger)
    first = schedule.next_perf
    schedule.run_until(time.monotonic() + 0.2)
    hold.set()
    user.pool.join(timeout=5)
    totals = ledger.totals()
    assert len(user.sent) == 1 and user.sent[0][1] == first
    assert totals["scheduled"] >= 10
    assert totals["dropped"] == totals["scheduled"] - 1  # every later send, none silently lost
    assert schedule.next_perf == first + totals["scheduled"] * 5_000_000  # the rate held
