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


def test_real_runs_to_consistent_report(tmp_path, target):
    run_dirs = []
    for mode in ("sync", "async"):
        run_dir = tmp_path / mode
        proc = run_locust("tests/engine/locustfile_matrix.py", "GrpcUser", "-u", "2", "-t", "5s",
                          "--host", target.as_url(), "--mode", mode, "--max-in-flight", "2",
                          "--mix", "recommender:3,text_classifier:1", "--run-dir", str(run_dir))
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

    groups = [g for g in data["groups"] if g["model"] == "recommender"]
    assert {g["mode"] for g in groups} == {"sync", "async"}
    for group in groups:
        # The JSON's exact P95 is numpy's over the steady-window records of that group...
        run_dir = tmp_path / group["mode"]
        records = pd.read_parquet(run_dir / "requests")
        ok = records[(records.model == "recommender") & records.ok]
        assert group["p95_us"] <= ok.latency_us.max()
        assert abs(group["p95_us"] - np.percentile(ok.latency_us, 95)) < 0.5 * group["p95_us"]
        # ...and the same numbers, formatted, are what the Markdown and HTML show.
        p95_ms, rps = f"{group['p95_us'] / 1000:.2f}", f"{group['throughput_rps']:.1f}"
        assert p95_ms in markdown and p95_ms in html
        assert rps in markdown and rps in html
    assert len(data["sync_vs_async"]) >= 1
