"""The one definition of a run's validity: whether its numbers describe the server.

A run measures the server only while the load generator does what it was asked. When the
generator itself is the bottleneck, or the run was not steady, its latencies and throughput
describe the generator, not Triton. Every run therefore carries a verdict, judged over the
same steady window as its numbers (`tritonload.core.numbers`), with one short reason per
broken rule:

* **Load generator saturated**: a client (Locust) process used ``>= CLIENT_CPU_LIMIT`` of
  one core over the window (run.json ``client_cpu``: process CPU time sampled against the
  wall clock about once a second; under Locust's master/worker mode, also each worker's
  ``workers.<id>.client_cpu``, and the busiest process counts). A gevent process runs on
  one core; near 100% it sends late and reads answers late, which shows up as server
  latency.
* **Open loop behind schedule**: more than ``LATE_OR_DROPPED_LIMIT`` of the sends the
  schedule asked for in the window went out late (> 2 ms, `tritonload.load.arrivals`) or
  were dropped (``arrivals.parquet``; an interval counts when its midpoint lies in the
  window, the rule the report uses for server statistics intervals).
* **Failed requests**: more than ``ERROR_RATE_LIMIT`` of the window's requests failed.
* **Unstable**: run.json ``stability`` is present and says ``stable: false``.
* **Target unreachable**: an interval of run.json ``outages`` (every request failing for
  2 s or more, `tritonload.load.outages`) overlaps the window. The window's throughput and
  percentiles would otherwise average the outage with the service around it, silently.

A rule without its data is not judged (its share is NaN): closed-loop runs have no arrivals,
runs written before ``client_cpu`` existed (and synthetic runs) have no CPU samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tritonload.core.numbers import Numbers, Window, run_numbers
from tritonload.core.rundir import read_arrivals, read_run_json

#: Client CPU, as a share of one core, at which the generator counts as saturated. Locust
#: itself warns at 90% ("CPU usage above 90%! This may constrain your throughput and may even
#: give inconsistent response time measurements!"): past it, a gevent process queues its own
#: sends and reads behind its CPU, and that wait is measured as latency.
CLIENT_CPU_LIMIT = 0.90
#: Share of scheduled open-loop sends that may go out late or be dropped. perf_analyzer warns
#: when it cannot keep its request schedule; above 1% the load the server received is no
#: longer the rate asked for (dropped), nor at the times asked for (late).
LATE_OR_DROPPED_LIMIT = 0.01
#: Share of failed requests in the window above which the numbers describe failures rather
#: than service (the default error bound of the capacity analysis, ``--max-error-rate``).
ERROR_RATE_LIMIT = 0.01
#: CPU samples must cover at least this share of the window to judge the client CPU.
CPU_MIN_COVERAGE = 0.5

_NS = 1_000_000_000


@dataclass(frozen=True)
class Validity:
    """A run's verdict: valid, or the reasons it is not, with the shares it was judged on."""

    valid: bool
    reasons: tuple[str, ...]
    client_cpu_share: float  # the busiest client process's CPU s per wall s (1.0 = one core)
    late_share: float  # late sends / scheduled sends in the window (open loop)
    dropped_share: float  # dropped sends / scheduled sends in the window (open loop)
    error_rate: float  # failed / all requests in the window


def client_cpu_share(client_cpu: object, window: Window) -> float:
    """CPU seconds per wall second of the client process over the window (NaN without data).

    ``client_cpu`` is run.json's ``{"samples": [[wall_ns, cpu_s], ...]}``. The cumulative CPU
    time is interpolated linearly at the window's bounds, clipped to the sampled span; NaN
    when the samples cover less than ``CPU_MIN_COVERAGE`` of the window.
    """
    samples = client_cpu.get("samples") if isinstance(client_cpu, Mapping) else None
    try:
        points = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError):
        return math.nan
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
        return math.nan
    points = points[np.isfinite(points).all(axis=1)]
    points = points[np.argsort(points[:, 0], kind="stable")]
    if len(points) < 2 or window.end_ns <= window.start_ns:
        return math.nan
    lo = max(float(window.start_ns), points[0, 0])
    hi = min(float(window.end_ns), points[-1, 0])
    if hi <= lo or hi - lo < CPU_MIN_COVERAGE * (window.end_ns - window.start_ns):
        return math.nan
    cpu_lo, cpu_hi = np.interp([lo, hi], points[:, 0], points[:, 1])
    return float(max(cpu_hi - cpu_lo, 0.0) / ((hi - lo) / _NS))


def client_cpu_shares(meta: Mapping[str, Any], window: Window) -> dict[str, float]:
    """Each client process's CPU share over the window: ``"client"``, then every worker."""
    shares = {"client": client_cpu_share(meta.get("client_cpu"), window)}
    workers = meta.get("workers")
    for name, worker in (workers.items() if isinstance(workers, Mapping) else ()):
        if isinstance(worker, Mapping):
            shares[f"worker {name}"] = client_cpu_share(worker.get("client_cpu"), window)
    return shares


def arrival_shares(arrivals: pd.DataFrame | Sequence[Mapping[str, int]] | None,
                   window: Window) -> tuple[float, float]:
    """(late, dropped) over scheduled sends of the intervals in the window (NaN without any)."""
    frame = arrivals if isinstance(arrivals, pd.DataFrame) else pd.DataFrame(list(arrivals or []))
    needed = ("t_start_ns", "t_end_ns", "scheduled", "late", "dropped")
    if frame.empty or any(c not in frame.columns for c in needed):
        return math.nan, math.nan
    mid = (frame["t_start_ns"].to_numpy(np.int64) // 2 + frame["t_end_ns"].to_numpy(np.int64) // 2)
    inside = frame[(mid >= window.start_ns) & (mid < window.end_ns)]
    scheduled = int(inside["scheduled"].sum())
    if scheduled <= 0:
        return math.nan, math.nan
    return int(inside["late"].sum()) / scheduled, int(inside["dropped"].sum()) / scheduled


def _stability_reason(stability: object) -> str | None:
    if not isinstance(stability, Mapping) or stability.get("stable") is not False:
        return None
    rule = stability.get("rule") if isinstance(stability.get("rule"), Mapping) else {}
    windows = stability.get("windows")
    measured = len(windows) if isinstance(windows, Sequence) else "?"
    agree, tolerance = rule.get("windows", "?"), rule.get("tolerance")
    within = f" within ±{tolerance:.0%}" if isinstance(tolerance, int | float) else ""
    return (f"unstable: the last {agree} windows never agreed{within} "
            f"in {measured} measured windows")


def outage_overlap_s(outages: object, window: Window) -> tuple[float, str]:
    """Seconds of run.json ``outages`` inside the window, and the first one's kind."""
    total, kind = 0.0, ""
    for outage in outages if isinstance(outages, Sequence) else ():
        if not isinstance(outage, Mapping):
            continue
        start, end = outage.get("start_ns"), outage.get("end_ns")
        if not isinstance(start, int):
            continue
        end = end if isinstance(end, int) else window.end_ns
        inside = min(end, window.end_ns) - max(start, window.start_ns)
        if inside > 0:
            total += inside / _NS
            kind = kind or str(outage.get("kind") or "")
    return total, kind


def judge(meta: Mapping[str, Any], window: Window,
          arrivals: pd.DataFrame | Sequence[Mapping[str, int]] | None,
          numbers: Numbers) -> Validity:
    """A run's validity from its run.json, steady window, arrival counts and window numbers.

    Only ``numbers.requests`` and ``numbers.error_rate`` are used, so a caller that has the
    counts but not the latencies may pass an empty latency array.
    """
    reasons = []
    shares = client_cpu_shares(meta, window)
    busiest = max(shares, key=lambda k: -1.0 if math.isnan(shares[k]) else shares[k])
    cpu = shares[busiest]
    if cpu >= CLIENT_CPU_LIMIT:
        reasons.append(f"load generator saturated: {busiest} CPU {cpu:.0%} of a core "
                       f"(limit {CLIENT_CPU_LIMIT:.0%})")
    late, dropped = arrival_shares(arrivals, window)
    if late + dropped > LATE_OR_DROPPED_LIMIT:
        reasons.append(f"open loop behind schedule: {late:.1%} of scheduled sends late and "
                       f"{dropped:.1%} dropped (limit {LATE_OR_DROPPED_LIMIT:.0%} together)")
    error_rate = numbers.error_rate
    if error_rate > ERROR_RATE_LIMIT:
        reasons.append(f"failed requests: {error_rate:.1%} of {numbers.requests} requests "
                       f"in the steady window (limit {ERROR_RATE_LIMIT:.0%})")
    down_s, kind = outage_overlap_s(meta.get("outages"), window)
    if down_s > 0:
        span_s = (window.end_ns - window.start_ns) / _NS
        reasons.append(f"target unreachable for {down_s:.1f} s of the {span_s:.1f} s steady "
                       f"window ({kind or 'every request failed'})")
    unstable = _stability_reason(meta.get("stability"))
    if unstable:
        reasons.append(unstable)
    return Validity(not reasons, tuple(reasons), cpu, late, dropped, error_rate)


def run_validity(run_dir: str | Path) -> Validity:
    """The validity of a run directory, over the steady window of `core.numbers.run_numbers`."""
    numbers = run_numbers(run_dir)
    return judge(read_run_json(run_dir), numbers.window, read_arrivals(run_dir), numbers.total)
