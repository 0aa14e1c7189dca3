"""A short real run against the embedded server, then `tritonload report` in all three formats."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.locust_runs import REPO, run_locust

pytestmark = pytest.mark.integration


def _steady_window_ns(meta: dict) -> tuple[int, int]:
    """The steady window, recomputed from run.json by docs/capacity-planning.md's rule.

    Written out here rather than imported, so that the report is checked against the rule and
    not against its own code: drop ``warmup_s``, or else the first 10% of the load period
    capped at 30 s, then keep a whole number of seconds.
    """
    start, end = meta["started_ns"], meta["ended_ns"]
    total_s = (end - start) / 1e9
    warmup_s = meta.get("warmup_s") or min(0.1 * total_s, 30.0)
    first = start + round(warmup_s * 1e9)
    whole_s = (end - first) // 1_000_000_000
    assert whole_s >= 1, "the run is too short for a steady window"
    return first, first + whole_s * 1_000_000_000


def test_real_runs_to_consistent_report(tmp_path, target):
    run_dirs = []
    # Equal load, 4 requests in flight: 4 sync users, or 2 async users with 2 in flight each.
    for mode, users in (("sync", "4"), ("async", "2")):
        run_dir = tmp_path / mode
        proc = run_locust("tests/engine/locustfile_matrix.py", "GrpcUser", "-u", users, "-r",
                          "100", "-t", "5s", "--host", target.as_url(), "--mode", mode,
                          "--max-in-flight", "2", "--mix", "recommender:3,text_classifier:1",
                          "--run-dir", str(run_dir))
        assert proc.returncode == 0, proc.stderr[-2000:]
        run_dirs.append(run_dir)
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "tritonload.cli", "report", *map(str, run_dirs),
                           "-o", str(out), "--slo-p95-ms", "50"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((out / "report.json").read_text())
    markdown = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3  # self-contained charts

    meta = {mode: json.loads((tmp_path / mode / "run.json").read_text())
            for mode in ("sync", "async")}
    assert {m["load"]["level"] for m in meta.values()} == {4}
    groups = [g for g in data["groups"] if g["model"] == "recommender"]
    assert sorted(g["mode"] for g in groups) == ["async", "sync"]
    for group in groups:
        # The JSON's numbers are numpy's over the records that completed in the steady window,
        # recomputed here from the raw Parquet parts and run.json...
        run_dir = tmp_path / group["mode"]
        assert group["run_id"] == meta[group["mode"]]["run_id"]
        start, end = _steady_window_ns(meta[group["mode"]])
        records = pd.read_parquet(run_dir / "requests")
        done = records.intended_start_ns + (records.latency_us * 1000).astype("int64")
        steady = records[(records.model == "recommender") & (done >= start) & (done < end)]
        ok = steady[steady.ok]
        assert len(ok) > 50
        assert group["requests"] == len(steady) and group["ok"] == len(ok)
        assert group["duration_s"] == (end - start) / 1e9
        assert group["throughput_rps"] == pytest.approx(len(ok) / ((end - start) / 1e9),
                                                        rel=1e-9)
        assert group["p95_us"] == pytest.approx(np.percentile(ok.latency_us, 95), rel=1e-9)
        # ...and the same numbers, formatted, are what the Markdown and HTML show.
        p95_ms, rps = f"{group['p95_us'] / 1000:.2f}", f"{group['throughput_rps']:.1f}"
        assert p95_ms in markdown and p95_ms in html
        assert rps in markdown and rps in html
    # Sync and async ran at equal load, so every model (and their aggregate) makes one pair,
    # sync as A and async as B, with the groups' own throughput and P95.
    pairs = data["sync_vs_async"]["pairs"]
    assert sorted((p["model"], p["protocol"], p["load_kind"], p["load_level"]) for p in pairs) == [
        (m, "grpc", "concurrency", 4) for m in ("(all models)", "recommender", "text_classifier")]
    by_mode = {g["mode"]: g for g in groups}
    (pair,) = [p for p in pairs if p["model"] == "recommender"]
    assert (pair["run_a"], pair["run_b"]) == (meta["sync"]["run_id"], meta["async"]["run_id"])
    assert pair["throughput_a"] == by_mode["sync"]["throughput_rps"]
    assert pair["p95_b_us"] == by_mode["async"]["p95_us"]
    assert pair["throughput_ratio"] == pytest.approx(
        by_mode["async"]["throughput_rps"] / by_mode["sync"]["throughput_rps"])
    assert len(data["sync_vs_async"]["claim"]["pairs"]) == 3
