"""The one definition of a run's numbers (tritonload.core.numbers), and that the report uses it."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from tritonload.analysis import metrics
from tritonload.analysis.load import load_run
from tritonload.analysis.synthetic import SyntheticModel, write_synthetic_run

from tritonload.core.numbers import in_window, run_numbers, steady_window, summarize

S = 1_000_000_000
T0 = 1_700_000_000 * S


def test_warmup_from_run_json_then_whole_seconds():
    window = steady_window(T0, T0 + int(10.7 * S), warmup_s=2.0)
    assert (window.start_ns, window.end_ns) == (T0 + 2 * S, T0 + 10 * S)
    assert window.duration_s == 8.0 and window.trimmed and window.warmup_dropped_s == 2.0
    assert window.describe(T0) == "2.0–10.0 s of the run (warm-up: warmup_s=2 from run.json)"


def test_default_warmup_is_a_tenth_capped_at_30_s():
    assert steady_window(T0, T0 + 20 * S, warmup_s=0).start_ns == T0 + 2 * S
    long = steady_window(T0, T0 + 1000 * S, warmup_s=0)
    assert long.start_ns == T0 + 30 * S and long.duration_s == 970.0


def test_a_run_too_short_to_trim_is_used_whole():
    window = steady_window(T0, T0 + S // 2, warmup_s=0)
    assert (window.start_ns, window.end_ns, window.trimmed) == (T0, T0 + S // 2, False)


def test_missing_bounds_fall_back_to_the_records():
    window = steady_window(None, float("nan"), 0, first_ns=T0, last_ns=T0 + 10 * S)
    assert (window.start_ns, window.end_ns) == (T0 + S, T0 + 10 * S)


def test_a_request_counts_where_it_completes():
    window = steady_window(T0, T0 + 10 * S, warmup_s=2.0)
    starts = np.array([T0 + S, T0 + S, T0 + 9 * S, T0 + 9 * S])
    latency_us = np.array([500_000.0, 1_500_000.0, 999_999.0, 1_000_000.0])
    # completes at 1.5 s (warm-up), 2.5 s (in), 9.999999 s (in), 10.0 s (end is exclusive)
    assert in_window(starts, latency_us, window).tolist() == [False, True, True, False]


def test_summarize_counts_successes_per_second_and_exact_percentiles():
    latencies = np.array([1000.0, 2000.0, 3000.0, 4000.0, 99_000.0])
    numbers = summarize(latencies, np.array([True, True, True, True, False]), duration_s=2.0)
    assert (numbers.requests, numbers.ok, numbers.errors) == (5, 4, 1)
    assert numbers.throughput_rps == 2.0 and numbers.error_rate == 0.2
    assert numbers.percentile_ms(50) == 2.5  # linear interpolation, the failure left out
    assert numbers.percentile_ms(100) == 4.0
    assert math.isnan(summarize(np.array([5.0]), np.array([False]), 1.0).percentile_ms(95))


def test_the_report_and_run_numbers_agree_on_one_run(tmp_path):
    run = write_synthetic_run(
        tmp_path / "run", [SyntheticModel("a", rate_rps=300.0, error_rate=0.02),
                           SyntheticModel("b", rate_rps=100.0, latency_median_us=9000.0)],
        duration_s=12.3, warmup_s=1.5, seed=5)
    numbers = run_numbers(run, by=("model",))
    loaded = load_run(run)
    windows = metrics.steady_windows(loaded.runs)
    report = metrics.request_metrics(loaded.records, windows, loaded.runs, n_boot=100,
                                     cdf_points=0).set_index("model")
    assert windows.window_start_ns[0] == numbers.window.start_ns
    assert windows.window_end_ns[0] == numbers.window.end_ns
    for model in ("a", "b"):
        mine, theirs = numbers.groups[(model,)], report.loc[model]
        assert (mine.requests, mine.ok) == (theirs.requests, theirs.ok)
        assert mine.throughput_rps == theirs.throughput_rps
        assert mine.percentile_ms(95) * 1000 == pytest.approx(theirs.p95_us, rel=1e-12)
        assert mine.percentile_ms(99) * 1000 == pytest.approx(theirs.p99_us, rel=1e-12)
    total = report.loc[metrics.ALL_MODELS]
    assert numbers.total.requests == total.requests
    assert numbers.total.percentile_ms(95) * 1000 == pytest.approx(total.p95_us, rel=1e-12)
    raw = pd.read_parquet(run / "requests")
    assert numbers.total.requests < len(raw)  # the warm-up and the partial last second are out


def test_a_killed_run_without_ended_ns_takes_its_bounds_from_the_records(tmp_path):
    run = write_synthetic_run(tmp_path / "run", [SyntheticModel("a", rate_rps=200.0)],
                              duration_s=10.0, warmup_s=1.0, seed=3)
    meta = json.loads((run / "run.json").read_text())
    meta["ended_ns"] = None
    (run / "run.json").write_text(json.dumps(meta))
    numbers = run_numbers(run)
    windows = metrics.steady_windows(load_run(run).runs)
    assert numbers.window.start_ns == meta["started_ns"] + S
    assert (numbers.window.start_ns, numbers.window.end_ns) == (
        windows.window_start_ns[0], windows.window_end_ns[0])
