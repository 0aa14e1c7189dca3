"""The one definition of a run's numbers: its steady window, throughput and exact percentiles.

Everything that prints or judges a run calls these functions: the ``run`` table, the SLO
gate, ``live.json``, the bench's stability rule, the sweep ranking and the report. So two
views of one run cannot disagree. Before they shared this module, the SLO gate judged the
whole run, warm-up included, while the report dropped the warm-up; ``tritonload run --slo
p95=... --report ...`` could fail the gate on warm-up latencies that the report left out.

The rules (docs/capacity-planning.md gives the reasons):

* **Steady window.** The load period is ``[started_ns, ended_ns]`` of run.json. The warm-up
  dropped is run.json's ``warmup_s`` when it is > 0, else the first 10% of the period, capped
  at 30 s. The window then keeps a whole number of seconds. A run too short to keep one whole
  second after its warm-up is used whole.
* **Membership.** A request belongs to the window its *completion* falls in (intended start
  + latency), so throughput counts requests served in the window.
* **Throughput** is successful requests per second of window.
* **Percentiles** are numpy's linear interpolation over the exact µs latencies of the
  successful requests; never rounded, never bucketed.
* **Error rate** is failed requests over all requests in the window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tritonload.core.rundir import read_records, read_run_json

WARMUP_FRACTION = 0.10
WARMUP_CAP_S = 30.0
_NS = 1_000_000_000


@dataclass(frozen=True)
class Window:
    """A steady window: wall-clock bounds and how the warm-up before it was chosen."""

    start_ns: int
    end_ns: int
    warmup_dropped_s: float
    rule: str
    trimmed: bool  # False: the run was too short to trim and is used whole

    @property
    def duration_s(self) -> float:
        """Length of the window in seconds."""
        return (self.end_ns - self.start_ns) / _NS

    def describe(self, origin_ns: int) -> str:
        """E.g. ``2.0–62.0 s of the run (warm-up: warmup_s=2 from run.json)``."""
        start, end = ((t - origin_ns) / _NS for t in (self.start_ns, self.end_ns))
        return f"{start:.1f}–{end:.1f} s of the run (warm-up: {self.rule})"


def steady_window(started_ns: int | None, ended_ns: int | None, warmup_s: float | None, *,
                  first_ns: int | None = None, last_ns: int | None = None,
                  warmup_fraction: float = WARMUP_FRACTION,
                  warmup_cap_s: float = WARMUP_CAP_S) -> Window:
    """The steady window of a run (see the module's rules).

    ``first_ns`` and ``last_ns`` (the first request start and the last completion) stand in
    for a missing ``started_ns`` or ``ended_ns``.
    """
    t0 = started_ns if _valid(started_ns) else first_ns
    t1 = ended_ns if _valid(ended_ns) else last_ns
    if not (_valid(t0) and _valid(t1)) or t1 <= t0:
        t0 = int(t0) if _valid(t0) else 0
        return Window(t0, t0, 0.0, "no load period", False)
    t0, t1 = int(t0), int(t1)
    total_s = (t1 - t0) / _NS
    if warmup_s and warmup_s > 0:
        warm = min(float(warmup_s), total_s)
        rule = f"warmup_s={warmup_s:g} from run.json"
    else:
        warm = min(warmup_fraction * total_s, warmup_cap_s)
        rule = f"first {warmup_fraction:.0%} of the run, capped at {warmup_cap_s:g} s"
    start = t0 + int(round(warm * _NS))
    whole = (t1 - start) // _NS
    if whole >= 1:
        return Window(start, start + whole * _NS, warm, rule, True)
    return Window(t0, t1, 0.0, "run too short to trim: whole run", False)


def _valid(x: object) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x)) and int(x) > 0


def completion_ns(intended_start_ns: np.ndarray, latency_us: np.ndarray) -> np.ndarray:
    """When each request completed (wall clock ns): intended start + latency."""
    done = (np.asarray(latency_us, dtype=np.float64) * 1000.0).astype(np.int64)
    done += np.asarray(intended_start_ns, dtype=np.int64)
    return done


def in_window(intended_start_ns: np.ndarray, latency_us: np.ndarray, window: Window
              ) -> np.ndarray:
    """Mask of the requests that completed inside the window."""
    done = completion_ns(intended_start_ns, latency_us)
    return (done >= window.start_ns) & (done < window.end_ns)


def percentiles_us(latencies_us: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """Exact percentiles (numpy's linear interpolation) of latencies; NaN when there are none."""
    values = np.asarray(latencies_us, dtype=np.float64)
    if not len(values):
        return np.full(len(percentiles), math.nan)
    return np.percentile(values, list(percentiles))


def throughput_rps(successes: int, duration_s: float) -> float:
    """Successful requests per second of window (NaN for an empty window)."""
    return successes / duration_s if duration_s > 0 else math.nan


@dataclass(frozen=True)
class Numbers:
    """A set of requests, summarised: counts, throughput, error rate and their latencies."""

    requests: int
    ok: int
    duration_s: float
    latencies_us: np.ndarray = field(repr=False, compare=False)  # successful requests only

    @property
    def errors(self) -> int:
        """Failed requests."""
        return self.requests - self.ok

    @property
    def throughput_rps(self) -> float:
        """Successful requests per second."""
        return throughput_rps(self.ok, self.duration_s)

    @property
    def error_rate(self) -> float:
        """Failed over all requests (NaN when there were none)."""
        return self.errors / self.requests if self.requests else math.nan

    def percentile_ms(self, percentile: float) -> float:
        """Exact latency percentile in ms (NaN without successful requests)."""
        return float(percentiles_us(self.latencies_us, [percentile])[0]) / 1000.0


def summarize(latency_us: np.ndarray, ok: np.ndarray, duration_s: float) -> Numbers:
    """The numbers of a set of requests observed over ``duration_s`` seconds."""
    ok = np.asarray(ok, dtype=bool)
    latencies = np.asarray(latency_us, dtype=np.float64)[ok]
    return Numbers(len(ok), int(ok.sum()), float(duration_s), latencies)


@dataclass(frozen=True)
class RunNumbers:
    """A run's numbers over its steady window: all requests, and per group."""

    window: Window
    started_ns: int
    total: Numbers
    groups: dict[tuple, Numbers]

    def describe_window(self) -> str:
        """Which part of the run these numbers cover, in one phrase."""
        return self.window.describe(self.started_ns)


def numbers_of(records: pd.DataFrame, window: Window, started_ns: int,
               by: Sequence[str] = ()) -> RunNumbers:
    """The numbers of request records over a window, in all and per ``by`` group.

    ``records`` needs ``intended_start_ns``, ``latency_us``, ``ok`` and the ``by`` columns.
    """
    steady = records[in_window(records["intended_start_ns"].to_numpy(),
                               records["latency_us"].to_numpy(), window)]
    duration = window.duration_s

    def of(frame: pd.DataFrame) -> Numbers:
        return summarize(frame["latency_us"].to_numpy(), frame["ok"].to_numpy(), duration)

    groups = {}
    if by and len(steady):
        for key, frame in steady.groupby(list(by), observed=True, sort=True):
            groups[key if isinstance(key, tuple) else (key,)] = of(frame)
    return RunNumbers(window, started_ns, of(steady), groups)


def run_window(meta: dict, records: pd.DataFrame) -> Window:
    """A run's steady window from its run.json; a killed run's records stand in for its bounds."""
    started, ended = meta.get("started_ns"), meta.get("ended_ns")
    first = last = None
    if len(records) and not (_valid(started) and _valid(ended)):  # a killed run: the records say
        first = int(records["intended_start_ns"].min())
        last = int(completion_ns(records["intended_start_ns"], records["latency_us"]).max())
    return steady_window(started, ended, meta.get("warmup_s"), first_ns=first, last_ns=last)


def run_numbers(run_dir: str | Path, by: Sequence[str] = ()) -> RunNumbers:
    """The numbers of a run directory, over its steady window, optionally grouped ``by``."""
    meta = read_run_json(run_dir)
    records = read_records(run_dir, ["intended_start_ns", "latency_us", "ok", *by])
    window = run_window(meta, records)
    started = meta.get("started_ns")
    if not _valid(started):
        started = int(records["intended_start_ns"].min()) if len(records) else 0
    return numbers_of(records, window, int(started), by)


def percentile_interval_us(latencies_us: np.ndarray, percentile: float,
                           level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for a latency percentile, from order statistics.

    The number of latencies below the true q-quantile is Binomial(n, q); the interval runs
    between the order statistics at ``n·q ∓ z·sqrt(n·q·(1−q))``. It assumes independent
    latencies, which queueing makes only roughly true, so callers that can see time (the
    capacity search) widen it with the spread between sub-windows. NaNs when there are no
    latencies.
    """
    values = np.sort(np.asarray(latencies_us, dtype=np.float64))
    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    q = percentile / 100.0
    z = normal_quantile(1 - (1 - level) / 2)
    half = z * math.sqrt(n * q * (1 - q))
    lo = min(max(int(math.floor(n * q - half)) - 1, 0), n - 1)
    hi = min(max(int(math.ceil(n * q + half)), 0), n - 1)
    return (float(values[lo]), float(values[hi]))


def normal_quantile(p: float) -> float:
    """Standard normal quantile, by bisection on erf (no scipy)."""
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom (exact, for any integer df >= 1).

    Bisection on the closed-form CDF for integer df (Abramowitz & Stegun 26.7.3-4), so small
    df are exact: ``t_quantile(0.975, 1) = 12.706``, ``(0.975, 2) = 4.303``.
    """
    if df < 1:
        raise ValueError("df must be >= 1")
    if not 0 < p < 1:
        raise ValueError("p must be in (0, 1)")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _t_cdf(t: float, df: int) -> float:
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2:  # A&S 26.7.3: odd df
        term = total = c if df > 1 else 0.0
        for j in range(1, (df - 1) // 2):
            term *= c * c * (2 * j) / (2 * j + 1)
            total += term
        a = 2 / math.pi * (theta + s * total)
    else:  # A&S 26.7.4: even df
        term = total = 1.0
        for j in range(1, df // 2):
            term *= c * c * (2 * j - 1) / (2 * j)
            total += term
        a = s * total
    return 0.5 + a / 2 if t >= 0 else 0.5 - a / 2
