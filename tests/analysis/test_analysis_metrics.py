"""Metrics: steady window, exact percentiles, throughput, server side, bootstrap."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from tritonload.analysis import metrics
from tritonload.analysis.load import load_run, load_runs

NS = 1_000_000_000


def _analyse(run, **kw):
    rs = load_run(run) if not isinstance(run, list) else load_runs(run)
    w = metrics.steady_windows(rs.runs)
    return rs, w, metrics.request_metrics(rs.records, w, rs.runs, n_boot=kw.pop("n_boot", 500),
                                          **kw)


def _raw_window_latencies(run, model):
    """Recompute the steady window by hand from the files, per the documented rule."""
    meta = json.loads((run / "run.json").read_text())
    raw = pd.read_parquet(run / "requests")
    t0, t1 = meta["started_ns"], meta["ended_ns"]
    warm = meta["warmup_s"] if meta["warmup_s"] > 0 else min(0.1 * (t1 - t0) / NS, 30.0)
    start = t0 + round(warm * NS)
    end = start + ((t1 - start) // NS) * NS
    done = raw["intended_start_ns"] + (raw["latency_us"] * 1000).astype("int64")
    sel = (done >= start) & (done < end) & (raw["model"] == model)
    return raw[sel], (end - start) / NS


def test_percentiles_equal_numpy_percentile_of_raw_latencies(make_run, Model):
    run = make_run([Model("a", rate_rps=300, latency_sigma=0.8, error_rate=0.05),
                    Model("b", rate_rps=77, latency_median_us=900)], duration_s=15)
    _, _, m = _analyse(run)
    for model in ("a", "b"):
        raw, _ = _raw_window_latencies(run, model)
        lat = raw.loc[raw["ok"], "latency_us"].to_numpy()
        row = m[m["model"] == model].iloc[0]
        expected = np.percentile(lat, [50, 90, 95, 99, 99.9, 100])
        got = [row[f"{p}_us"] for p in ("p50", "p90", "p95", "p99", "p99_9", "max")]
        assert got == list(expected)  # exact, not approximately
        assert row["ok"] == len(lat)
        assert row["requests"] == len(raw)
        assert row["mean_latency_us"] == pytest.approx(lat.mean(), rel=1e-12)


def test_throughput_is_ok_requests_per_second_of_window(make_run, Model):
    run = make_run([Model("a", rate_rps=250, error_rate=0.1)], duration_s=30)
    _, w, m = _analyse(run)
    raw, duration = _raw_window_latencies(run, "a")
    row = m.iloc[0]
    assert row["duration_s"] == duration == 27.0  # 30 s − 3 s warm-up, whole seconds
    assert row["throughput_rps"] == raw["ok"].sum() / duration
    # The true rate (250 × 0.9 = 225/s) lies in the 95% interval.
    assert row["throughput_lo"] < 225 < row["throughput_hi"]
    assert row["error_rate"] == pytest.approx((~raw["ok"]).mean())
    assert row["error_rate_lo"] < 0.1 < row["error_rate_hi"]


def test_steady_window_rule(make_run):
    short = make_run(duration_s=10.5)
    capped = make_run(duration_s=400)
    explicit = make_run(duration_s=20, warmup_s=4.25)
    tiny = make_run(duration_s=0.8)
    rs = load_runs([short, capped, explicit, tiny])
    w = metrics.steady_windows(rs.runs).set_index("run_id")
    ids = list(rs.runs["run_id"])
    # 10% of 10.5 s = 1.05 s dropped, then 9 whole seconds (the partial 0.45 s is dropped).
    assert w.loc[ids[0], "warmup_dropped_s"] == pytest.approx(1.05)
    assert w.loc[ids[0], "duration_s"] == 9.0
    # 10% of 400 s is capped at 30 s.
    assert w.loc[ids[1], "warmup_dropped_s"] == 30.0
    assert w.loc[ids[1], "duration_s"] == 370.0
    # run.json's warmup_s wins.
    assert w.loc[ids[2], "warmup_dropped_s"] == 4.25
    assert w.loc[ids[2], "duration_s"] == 15.0
    assert "run.json" in w.loc[ids[2], "warmup_rule"]
    # Too short to trim: the whole run, flagged.
    assert not w.loc[ids[3], "trimmed"]
    assert w.loc[ids[3], "duration_s"] == pytest.approx(0.8)
    for rid in ids[:3]:
        span = w.loc[rid, "window_end_ns"] - w.loc[rid, "window_start_ns"]
        assert span % NS == 0


def test_steady_window_falls_back_to_records_without_end(make_run):
    run = make_run(duration_s=12)
    meta = json.loads((run / "run.json").read_text())
    meta["ended_ns"] = None  # a killed run
    (run / "run.json").write_text(json.dumps(meta))
    rs = load_run(run)
    w = metrics.steady_windows(rs.runs).iloc[0]
    assert w["trimmed"] and 10 <= w["duration_s"] <= 11


def test_all_models_group(make_run, Model):
    run = make_run([Model("a", rate_rps=100), Model("b", rate_rps=60)])
    rs, _, m = _analyse(run)
    allm = m[m["model"] == metrics.ALL_MODELS].iloc[0]
    parts = m[m["model"] != metrics.ALL_MODELS]
    assert allm["ok"] == parts["ok"].sum()
    assert allm["throughput_rps"] == pytest.approx(parts["throughput_rps"].sum())


def test_bootstrap_percentile_matches_naive_bootstrap():
    rng = np.random.default_rng(3)
    x = np.sort(rng.lognormal(8, 0.5, 1500))
    fast = metrics.bootstrap_percentile(x, 95, 4000, np.random.default_rng(1))
    idx = np.random.default_rng(2).integers(0, len(x), (4000, len(x)))
    naive = np.percentile(x[idx], 95, axis=1)
    assert np.percentile(fast, 2.5) == pytest.approx(np.percentile(naive, 2.5), rel=0.01)
    assert np.percentile(fast, 97.5) == pytest.approx(np.percentile(naive, 97.5), rel=0.01)
    assert fast.mean() == pytest.approx(naive.mean(), rel=0.005)


def test_bootstrap_is_seeded():
    x = np.arange(1000.0)
    a = metrics.bootstrap_percentile(x, 95, 100, np.random.default_rng(7))
    b = metrics.bootstrap_percentile(x, 95, 100, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_p95_interval_covers_true_quantile(make_run, Model):
    model = Model("a", rate_rps=400, latency_median_us=2000, latency_sigma=0.5)
    _, _, m = _analyse(make_run([model]))
    row = m.iloc[0]
    assert row["p95_lo_us"] < model.latency_quantile_us(0.95) < row["p95_hi_us"]


def test_server_metrics_and_time_breakdown(make_run, Model):
    run = make_run([Model("a", rate_rps=200, batch_sizes={1: 1, 4: 1}, server_fraction=0.6,
                          queue_share=0.25)])
    rs, w, m = _analyse(run)
    s = metrics.server_metrics(rs.server_stats, w)
    raw = pd.read_parquet(run / "server_stats.parquet")
    mid = (raw["t_start_ns"] + raw["t_end_ns"]) / 2
    win = w.iloc[0]
    sel = raw[(mid >= win["window_start_ns"]) & (mid < win["window_end_ns"])]
    row = s.iloc[0]
    assert row["mean_batch_size"] == sel["inference_count"].sum() / sel["execution_count"].sum()
    assert row["queue_us"] == pytest.approx(sel["queue_ns"].sum() / sel["queue_count"].sum()
                                            / 1000)
    assert row["server_window"] == "steady window"
    b = metrics.time_breakdown(m, s).iloc[0]
    assert b["client_overhead_us"] == pytest.approx(b["mean_latency_us"]
                                                    - b["server_request_us"])
    assert b["server_request_us"] == pytest.approx(
        b["queue_us"] + b["compute_input_us"] + b["compute_infer_us"] + b["compute_output_us"])
    # The synthetic server spends 60% of the mean latency inside Triton.
    assert b["overhead_share"] == pytest.approx(0.4, abs=0.03)
    hist = metrics.batch_histogram(rs.server_batches, w)
    assert set(hist["batch_size"]) == {1, 4}
    assert hist["share"].sum() == pytest.approx(1.0)
    assert (hist["inferences"] == hist["executions"] * hist["batch_size"]).all()


def test_error_breakdown_by_kind(make_run, Model):
    run = make_run([Model("a", rate_rps=500, error_rate=0.2,
                          error_kinds=("timeout", "unavailable"))])
    rs, w, m = _analyse(run)
    errs = metrics.error_breakdown(rs.records, w)
    assert set(errs["error_kind"]) == {"timeout", "unavailable"}
    assert errs["count"].sum() == m.iloc[0]["errors"]
    assert errs["rate"].sum() == pytest.approx(m.iloc[0]["error_rate"])


def test_empty_run_gives_no_groups(make_run, Model):
    run = make_run([Model("a", rate_rps=0.001)], duration_s=2)
    rs, w, m = _analyse(run)
    assert len(rs.records) == 0
    assert m.empty or (m["ok"] == 0).all()


def test_latency_cdf_is_monotone(make_run):
    _, _, m = _analyse(make_run())
    cdf = metrics.latency_cdf(m)
    assert len(cdf) == 101
    assert np.all(np.diff(cdf["latency_us"].to_numpy()) >= 0)
    assert cdf["latency_us"].iloc[-1] == m.iloc[0]["max_us"]
    assert not math.isnan(cdf["latency_us"].iloc[0])
