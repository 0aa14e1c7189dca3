"""Capacity: the knee of a synthetic sweep with a known answer, and replicas arithmetic."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from tritonload.analysis import capacity, metrics, plots
from tritonload.analysis.load import load_runs

from tritonload.core.errors import UsageError

# users → (throughput req/s, P95 ms): saturation at 6 users; P95 crosses 20 ms after 6.
SWEEP = {1: (100, 8), 2: (200, 9), 4: (400, 11), 6: (560, 16), 8: (600, 35), 12: (610, 80)}


def _sweep(make_run, Model, points, sigma=0.3):
    dirs = []
    for users, (rps, p95_ms) in points.items():
        z95 = 1.6448536269514722
        median = p95_ms * 1000 / math.exp(sigma * z95)
        dirs.append(make_run([Model("dense", rate_rps=rps, latency_median_us=median,
                                    latency_sigma=sigma)], load_level=users,
                             duration_s=12, seed=users))
    rs = load_runs(dirs)
    w = metrics.steady_windows(rs.runs)
    m = metrics.request_metrics(rs.records, w, rs.runs, n_boot=200)
    return capacity.capacity_curves(m)


def test_knee_found_on_known_curve(make_run, Model):
    curves = _sweep(make_run, Model, SWEEP)
    assert list(curves["load_level"]) == sorted(SWEEP)
    lim = capacity.max_throughput_under_slo(curves, slo_p95_us=20_000).iloc[0]
    assert lim["status"] == capacity.WITHIN_SWEEP
    assert lim["at_load_level"] == 6
    assert lim["max_rps"] == pytest.approx(560, rel=0.06)
    assert lim["first_violation_level"] == 8
    assert "P95" in lim["violation"]
    # A tighter SLO moves the knee down.
    tight = capacity.max_throughput_under_slo(curves, slo_p95_us=12_000).iloc[0]
    assert tight["at_load_level"] == 4


def test_sweep_that_never_crosses_the_slo_says_so(make_run, Model):
    curves = _sweep(make_run, Model, {1: (100, 8), 2: (200, 9)})
    lim = capacity.max_throughput_under_slo(curves, slo_p95_us=50_000).iloc[0]
    assert lim["status"] == capacity.NEVER_CROSSED
    assert lim["max_rps"] == pytest.approx(200, rel=0.1)
    assert "never crossed" in lim["explanation"] and "not extrapolated" in lim["explanation"]
    plan = capacity.capacity_plan(pd.DataFrame([lim]), target_rps=1000)
    assert "upper bound" in plan.iloc[0]["note"]


def test_sweep_that_never_meets_the_slo(make_run, Model):
    curves = _sweep(make_run, Model, {1: (100, 30), 2: (200, 40)})
    lim = capacity.max_throughput_under_slo(curves, slo_p95_us=20_000).iloc[0]
    assert lim["status"] == capacity.NEVER_MET
    assert math.isnan(lim["max_rps"])
    plan = capacity.capacity_plan(pd.DataFrame([lim]), target_rps=1000)
    assert pd.isna(plan.iloc[0]["replicas"])
    # The knee chart still draws with no capacity point to mark (an empty mask once selected
    # no columns and raised KeyError: 'max_rps').
    png = plots.p95_vs_throughput(curves, 20_000, pd.DataFrame([lim]))
    assert png is not None and png.startswith(b"\x89PNG")


def test_error_bound_stops_the_walk():
    curves = pd.DataFrame({
        "model": "m", "protocol": "grpc", "mode": "sync", "load_kind": "concurrency",
        "load_level": [1.0, 2.0, 3.0], "run_id": ["a", "b", "c"],
        "throughput_rps": [100.0, 200.0, 300.0], "throughput_lo": math.nan,
        "throughput_hi": math.nan, "p95_us": [5000.0, 6000.0, 7000.0], "p95_lo_us": math.nan,
        "p95_hi_us": math.nan, "p99_us": math.nan, "error_rate": [0.0, 0.05, 0.0],
    })
    lim = capacity.max_throughput_under_slo(curves, slo_p95_us=10_000,
                                            max_error_rate=0.01).iloc[0]
    assert lim["max_rps"] == 100.0 and lim["first_violation_level"] == 2.0
    assert "error rate" in lim["violation"]


@pytest.mark.parametrize(
    ("target", "max_rps", "headroom", "expected"),
    [(1000, 400, 0.3, 4),      # 1000 / 280 = 3.57 → 4
     (700, 1000, 0.3, 1),      # exactly 1.0 → 1, not 2
     (2100, 1000, 0.3, 3),     # exactly 3.0 (floating point 3.0000000000000004) → 3
     (2101, 1000, 0.3, 4),
     (50, 1000, 0.0, 1),
     (10_000, 1234.5, 0.5, 17)],  # 10000 / 617.25 = 16.2 → 17
)
def test_replicas_follow_the_arithmetic(target, max_rps, headroom, expected):
    plan = capacity.replicas_needed(target, max_rps, headroom)
    assert plan.replicas == expected
    assert plan.usable_rps == pytest.approx(max_rps * (1 - headroom))
    assert plan.replicas == math.ceil(round(target / (max_rps * (1 - headroom)), 9))
    assert plan.arithmetic.startswith(f"ceil({target:g} / ({max_rps:.1f} × (1 − {headroom:.2f})))")
    assert plan.arithmetic.endswith(f"= {expected}")


def test_replicas_default_headroom_is_30_percent():
    assert capacity.replicas_needed(1000, 1000).headroom == 0.3
    assert capacity.replicas_needed(1000, 1000).replicas == 2


@pytest.mark.parametrize(("target", "max_rps", "headroom"),
                         [(0, 100, 0.3), (100, 0, 0.3), (100, 100, 1.0), (100, 100, -0.1)])
def test_replicas_reject_bad_input(target, max_rps, headroom):
    with pytest.raises(UsageError):
        capacity.replicas_needed(target, max_rps, headroom)
