"""Comparisons: significance, the async claim, gRPC vs HTTP, batching on vs off."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from tritonload.analysis import batching, compare, metrics
from tritonload.analysis.load import load_run, load_runs


def _metrics(paths, n_boot=1000, seed=0):
    rs = load_runs(paths)
    w = metrics.steady_windows(rs.runs)
    m = metrics.request_metrics(rs.records, w, rs.runs, n_boot=n_boot, seed=seed)
    return rs, w, m


def _side(path, seed):
    rs = load_run(path)
    w = metrics.steady_windows(rs.runs)
    return metrics.request_metrics(rs.records, w, rs.runs, n_boot=1000, seed=seed)


def _row(table, metric):
    return table[table["metric"] == metric].iloc[0]


def test_verdict_rules():
    assert compare.verdict(1.05, 1.3, higher_is_better=True) == compare.IMPROVEMENT
    assert compare.verdict(1.05, 1.3, higher_is_better=False) == compare.REGRESSION
    assert compare.verdict(0.7, 0.9, higher_is_better=False) == compare.IMPROVEMENT
    assert compare.verdict(0.95, 1.2, higher_is_better=True) == compare.NOT_SIGNIFICANT
    assert compare.verdict(-0.1, 0.2, higher_is_better=True, null=0) == compare.NOT_SIGNIFICANT
    assert compare.verdict(math.nan, 1, higher_is_better=True) == compare.NO_INTERVAL


def test_real_20_percent_throughput_difference_is_significant(make_run, Model):
    a = make_run([Model("dense", rate_rps=100)], duration_s=30, seed=11)
    b = make_run([Model("dense", rate_rps=120)], duration_s=30, seed=12)
    table = compare.compare_runs(_side(a, 0), _side(b, 1))
    tp = _row(table, "throughput_rps")
    assert tp["change"] == pytest.approx(0.2, abs=0.06)
    assert tp["change_lo"] > 0
    assert tp["verdict"] == compare.IMPROVEMENT
    # Same latency distribution: P95 is not called a win or a loss.
    assert _row(table, "p95_us")["verdict"] == compare.NOT_SIGNIFICANT
    # And the other way round it is a regression.
    back = compare.compare_runs(_side(b, 0), _side(a, 1))
    assert _row(back, "throughput_rps")["verdict"] == compare.REGRESSION


def test_a_a_comparison_is_not_significant(make_run, Model):
    model = Model("dense", rate_rps=100, latency_median_us=4000, latency_sigma=0.4,
                  error_rate=0.01)
    a = make_run([model], duration_s=30, seed=21)
    b = make_run([model], duration_s=30, seed=22)
    table = compare.compare_runs(_side(a, 0), _side(b, 1))
    assert set(table["verdict"]) == {compare.NOT_SIGNIFICANT}, table


def test_a_a_false_positive_rate_is_low(make_run, Model):
    """Over 12 independent A/A pairs, throughput and P95 are rarely flagged (95% level)."""
    model = Model("dense", rate_rps=80, latency_median_us=3000, latency_sigma=0.5)
    flagged = 0
    for i in range(12):
        a = make_run([model], duration_s=12, seed=100 + 2 * i)
        b = make_run([model], duration_s=12, seed=101 + 2 * i)
        table = compare.compare_runs(_side(a, 0), _side(b, 1))
        for metric in ("throughput_rps", "p95_us"):
            flagged += _row(table, metric)["verdict"] != compare.NOT_SIGNIFICANT
    assert flagged <= 3  # 24 tests at 5% → ~1.2 expected


def _sync_async_runs(make_run, Model, tp_factor, p95_factor, async_level=16):
    """Sync 4 users × 1 against async (synthetic async runs keep 4 in flight per user):
    level 16 is 4 users × 4 (equal users), level 4 is 1 user × 4 (equal in flight)."""
    sync = make_run([Model("m", rate_rps=100, latency_median_us=5000)], mode="sync",
                    load_level=4, seed=31)
    asy = make_run([Model("m", rate_rps=100 * tp_factor, latency_median_us=5000 * p95_factor)],
                   mode="async", load_level=async_level, seed=32)
    _, _, m = _metrics([sync, asy])
    return compare.sync_vs_async(m[m["model"] == "m"])


def test_async_claim_confirmed(make_run, Model):
    pairs = _sync_async_runs(make_run, Model, 4.0, 0.5)
    assert len(pairs) == 1
    assert pairs.iloc[0]["framing"] == compare.EQUAL_USERS
    assert pairs.iloc[0]["throughput_ratio"] == pytest.approx(4.0, rel=0.08)
    claim = compare.async_claim_check(pairs)
    assert claim["verdict"] == "confirmed" and claim["framing"] == compare.EQUAL_USERS
    assert "confirmed by this data" in claim["summary"]
    assert claim["holds"] == ["grpc m: 4 users × 1 vs 4 × 4 in flight"]


def test_async_claim_not_confirmed(make_run, Model):
    pairs = _sync_async_runs(make_run, Model, 1.5, 0.9)
    claim = compare.async_claim_check(pairs)
    assert claim["verdict"] == "not confirmed"
    assert claim["pairs"][0]["throughput_part"] == "not confirmed"
    assert claim["pairs"][0]["p95_part"] == "not confirmed"
    assert claim["does_not_hold"] == [claim["pairs"][0]["where"]]


def test_async_claim_is_not_judged_at_equal_in_flight(make_run, Model):
    """A pair at equal requests in flight is reported, but the claim is about equal users."""
    pairs = _sync_async_runs(make_run, Model, 4.0, 0.5, async_level=4)
    assert list(pairs["framing"]) == [compare.EQUAL_IN_FLIGHT]
    claim = compare.async_claim_check(pairs)
    assert claim["verdict"] == "no data"
    assert claim["by_framing"][compare.EQUAL_IN_FLIGHT]["verdict"] == "confirmed"
    assert claim["pairs"][0]["framing"] == compare.EQUAL_IN_FLIGHT
    assert "No sync/async pair at equal users" in claim["summary"]
    assert "At equal requests in flight" in claim["summary"]


def test_async_claim_without_pairs():
    claim = compare.async_claim_check(compare.sync_vs_async(pd.DataFrame(
        columns=["model", "protocol", "mode", "load_kind", "load_level"])))
    assert claim["verdict"] == "no data"


def test_grpc_vs_http_reports_payload_sizes(make_run, Model):
    g = make_run([Model("image", rate_rps=100, bytes_sent=602112, bytes_received=4004)],
                 protocol="grpc", seed=41)
    h = make_run([Model("image", rate_rps=80, bytes_sent=602112, bytes_received=4004)],
                 protocol="http", seed=42)
    _, _, m = _metrics([g, h])
    out = compare.grpc_vs_http(m)
    row = out.iloc[0]
    assert row["mean_bytes_sent"] == 602112 and row["mean_bytes_received"] == 4004
    assert row["throughput_ratio"] == pytest.approx(0.8, abs=0.06)
    assert row["throughput_verdict"] == compare.REGRESSION


def test_batching_on_vs_off(make_run, Model):
    run = make_run([
        Model("dense", rate_rps=300, latency_median_us=3000, batch_sizes={1: 1, 4: 3}),
        Model("dense_nobatch", rate_rps=150, latency_median_us=6000),
    ], duration_s=20)
    rs, w, m = _metrics([run])
    server = metrics.server_metrics(rs.server_stats, w)
    out = batching.batching_comparison(m, server)
    assert len(out) == 1
    row = out.iloc[0]
    assert row["model"] == "dense"
    assert row["throughput_gain"] == pytest.approx(2.0, rel=0.1)
    assert row["throughput_verdict"] == compare.IMPROVEMENT
    assert row["p95_ratio"] == pytest.approx(0.5, rel=0.1)
    assert row["p95_verdict"] == compare.IMPROVEMENT
    assert row["mean_batch_on"] == pytest.approx(3.25, abs=0.15)
    assert row["mean_batch_off"] == 1.0
    assert row["queue_on_us"] < row["queue_off_us"]


def test_ratio_interval_uses_replicates():
    rng = np.random.default_rng(0)
    a = rng.normal(100, 1, 1000)
    b = rng.normal(150, 1, 1000)
    ratio, lo, hi = compare.ratio_interval(100, 150, a, b)
    assert ratio == 1.5 and lo < 1.5 < hi and hi - lo < 0.1
