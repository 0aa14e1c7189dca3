"""The capacity search's decisions and answer (`tritonload.core.knee`), on known curves."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from tritonload.core.knee import (
    ABOVE_RANGE,
    BELOW_RANGE,
    FOUND,
    GENERATOR_BOUND,
    UNSETTLED,
    Probe,
    SearchLimits,
    knee,
    next_rate,
    probe_of,
)
from tritonload.core.numbers import numbers_of, steady_window

SLO_US = 50_000.0


def hockey_stick(capacity: float, floor_us: float = 10_000.0):
    """P95 that rises like a queue's: floor / (1 - load), past 60 s at capacity."""
    def p95(rate: float) -> float:
        load = rate / capacity
        return floor_us / (1 - load) if load < 1 else 60e6
    return p95


def probe(rate: float, p95: float, *, spread: float = 0.05, error_rate: float = 0.0,
          trusted: bool = True) -> Probe:
    return Probe(rate, min(rate, 1e9), 1000, p95, p95 * (1 - spread), p95 * (1 + spread),
                 error_rate, 0.97, trusted, () if trusted else ("saturated",))


def search(curve, limits: SearchLimits, **kw) -> list[Probe]:
    probes: list[Probe] = []
    while (rate := next_rate(probes, limits)) is not None:
        probes.append(probe(rate, curve(rate), **kw))
    return probes


@pytest.mark.parametrize("capacity", [130.0, 700.0, 1_800.0, 9_000.0])
def test_search_settles_within_precision_around_the_true_knee(capacity):
    curve = hockey_stick(capacity)
    limits = SearchLimits(slo_p95_us=SLO_US)
    probes = search(curve, limits)
    answer = knee(probes, limits)
    true_knee = capacity * (1 - 10_000 / SLO_US)  # where floor / (1 - load) = SLO
    assert answer.status == FOUND
    assert len(probes) <= 10
    assert answer.capacity_rps == pytest.approx(true_knee, rel=0.05)
    assert answer.capacity_lo_rps <= answer.capacity_rps <= answer.capacity_hi_rps
    assert answer.p95_us <= SLO_US < max(p.p95_us for p in probes)


def test_interval_widens_with_the_p95_intervals():
    curve = hockey_stick(1_000.0)
    limits = SearchLimits(slo_p95_us=SLO_US)
    narrow = knee(search(curve, limits, spread=0.02), limits)
    wide = knee(search(curve, limits, spread=0.30), limits)
    assert (wide.capacity_hi_rps - wide.capacity_lo_rps) > (
        narrow.capacity_hi_rps - narrow.capacity_lo_rps)


def test_every_rate_passing_up_to_the_cap_is_a_lower_bound():
    limits = SearchLimits(slo_p95_us=SLO_US, max_rps=500.0)
    probes = search(lambda r: 5_000.0, limits)
    answer = knee(probes, limits)
    assert answer.status == ABOVE_RANGE
    assert answer.capacity_rps == 500.0 and math.isnan(answer.capacity_hi_rps)
    assert "At least 500" in answer.explanation


def test_even_the_lowest_rate_failing_means_no_capacity():
    limits = SearchLimits(slo_p95_us=SLO_US, min_rps=1.0)
    probes = search(lambda r: 80_000.0, limits)
    answer = knee(probes, limits)
    assert answer.status == BELOW_RANGE and math.isnan(answer.capacity_rps)
    assert min(p.offered_rps for p in probes) == 1.0


def test_an_untrusted_probe_stops_the_search_as_generator_bound():
    limits = SearchLimits(slo_p95_us=SLO_US)
    probes = [probe(100, 10_000), probe(400, 11_000), probe(1600, 12_000, trusted=False)]
    assert next_rate(probes, limits) is None
    answer = knee(probes, limits)
    assert answer.status == GENERATOR_BOUND
    assert answer.capacity_rps == 400 and "saturated" in answer.explanation


def test_errors_fail_a_probe_even_with_a_good_p95():
    limits = SearchLimits(slo_p95_us=SLO_US, max_error_rate=0.01)
    probes = [probe(100, 10_000), probe(200, 11_000, error_rate=0.2)]
    answer = knee(probes, limits)
    assert answer.capacity_rps == 100  # no latency crossing to interpolate: the last pass
    assert "error rate 20.0%" in answer.explanation


def test_a_server_falling_behind_fails_a_probe_even_with_a_good_p95():
    """A generative server that prefills first keeps TTFT low while its decodes starve."""
    limits = SearchLimits(slo_p95_us=SLO_US, metric="ttft")
    probes = [probe(10, 10_000), dataclasses.replace(probe(40, 9_000), behind=True,
                                                    throughput_rps=12.0)]
    answer = knee(probes, limits)
    assert answer.capacity_rps == 10
    assert "only 12 req/s finished at 40 req/s" in answer.explanation
    assert "TTFT P95 was 10.0 ms" in answer.explanation


def test_a_pass_above_a_failure_is_not_trusted():
    limits = SearchLimits(slo_p95_us=SLO_US)
    probes = [probe(100, 10_000), probe(200, 60_000), probe(400, 20_000)]
    answer = knee(probes, limits)
    assert 100 <= answer.capacity_rps <= 200


def test_budget_cut_short_is_unsettled_not_found():
    limits = SearchLimits(slo_p95_us=SLO_US, max_probes=3)
    probes = search(hockey_stick(1_000.0), limits)
    assert len(probes) == 3
    assert knee(probes, limits).status == UNSETTLED


def test_probe_of_counts_goodput_and_widens_by_sub_windows():
    rng = np.random.default_rng(1)
    start = 10**18
    n = 4000
    starts = start + np.sort(rng.integers(0, 4 * 10**9, n))
    latency = rng.exponential(10_000, n)
    latency[starts > start + 3 * 10**9] *= 4  # the last second is much slower: drift
    records = pd.DataFrame({"intended_start_ns": starts, "latency_us": latency,
                            "ok": np.ones(n, bool)})
    window = steady_window(start, start + 4 * 10**9 + 1, 0.0, warmup_fraction=0.0)
    numbers = numbers_of(records, window, start)
    done = starts + (latency * 1000).astype(np.int64)
    steady = (done >= window.start_ns) & (done < window.end_ns)
    plain = probe_of(numbers, 1000, SLO_US)
    widened = probe_of(numbers, 1000, SLO_US, done[steady])
    assert plain.p95_lo_us < plain.p95_us < plain.p95_hi_us
    assert widened.p95_hi_us - widened.p95_lo_us > plain.p95_hi_us - plain.p95_lo_us
    assert widened.goodput == pytest.approx(np.mean(latency[steady] <= SLO_US))
