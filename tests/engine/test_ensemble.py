"""An ensemble in a real run: its steps' statistics sampled beside it, and attributed.

``image_pipeline`` (preprocess → image_classifier) on the session's embedded server, sent
to alone and beside image_classifier itself.
"""

from __future__ import annotations

import pandas as pd
from tritonload.analysis.load import load_run
from tritonload.analysis.pipeline import analyze
from tritonload.analysis.report import render_markdown, report_data

from tests.locust_runs import records, run_json, run_locust


def _run(triton, run_dir, mix):
    return run_locust("locustfiles/mixed_models.py", "-u", "2", "-r", "2", "-t", "4s",
                      "--host", f"127.0.0.1:{triton.ports.http}", "--mix", mix,
                      "--run-dir", str(run_dir), cwd=run_dir.parent)


def _section(run_dir) -> str:
    text = render_markdown(report_data(analyze(load_run(run_dir), n_boot=50)))
    return text.split("## Where the time goes: ensemble steps")[1].split("\n## ")[0]


def test_each_step_counts_the_ensembles_requests(triton, tmp_path):
    run_dir = tmp_path / "alone"
    proc = _run(triton, run_dir, "image_pipeline:1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert run_json(run_dir)["models"]["image_pipeline"]["ensemble_steps"] == [
        "preprocess", "image_classifier"]
    stats = pd.read_parquet(run_dir / "server_stats.parquet")
    steps = pd.read_parquet(run_dir / "server_steps.parquet")
    assert set(stats["model"]) == {"image_pipeline"}  # the steps stay out of the mix's table
    assert sorted(set(zip(steps["step"], steps["model"], strict=True))) == [
        (0, "preprocess"), (1, "image_classifier")]
    sent = stats["success_count"].sum()
    assert sent > 30
    # Every request of the ensemble went through both steps, and nothing else did. The
    # requests in flight at the stop (2 users, one each) may finish their steps before the
    # final sample and the ensemble itself after it.
    for model in ("preprocess", "image_classifier"):
        assert 0 <= steps[steps["model"] == model]["success_count"].sum() - sent <= 2
    # Same instants as the ensemble's own rows.
    assert set(steps["t_end_ns"]) == set(stats["t_end_ns"])
    section = _section(run_dir)
    assert "the bottleneck is step 2, image_classifier" in section
    assert "also served the mix directly" not in section
    rows = [ln for ln in section.splitlines() if ln.startswith("| image_pipeline")]
    assert [r.split(" | ")[3] for r in rows] == ["preprocess", "image_classifier"]


def test_a_step_the_mix_also_sends_to_is_marked_shared(triton, tmp_path):
    run_dir = tmp_path / "shared"
    proc = _run(triton, run_dir, "image_pipeline:1,image_classifier:1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = pd.read_parquet(run_dir / "server_stats.parquet")
    steps = pd.read_parquet(run_dir / "server_steps.parquet")
    direct = stats.groupby("model")["success_count"].sum()
    classifier = steps[steps["model"] == "image_classifier"]["success_count"].sum()
    # The step's statistics are the model's own, the same counters at the same instants:
    # they count the ensemble's requests and the direct ones.
    assert classifier == direct["image_classifier"]
    sent_direct = (records(run_dir)["model"] == "image_classifier").sum()
    assert 0 <= classifier - (direct["image_pipeline"] + sent_direct) <= 2
    assert "image_classifier also served the mix directly" in _section(run_dir)
