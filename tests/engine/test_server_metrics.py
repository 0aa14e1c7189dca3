"""Triton's metrics endpoint, read during a real run against the embedded server.

The embedded server has no GPU, so only the CPU and per-model families are real here (the GPU
and energy arithmetic is tested on a recorded sample in
tests/analysis/test_triton_metrics.py). The per-model counters are checked against the
statistics API, which counts the same requests.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pandas as pd
import pytest
from tritonload.analysis.load import load_run
from tritonload.analysis.pipeline import analyze
from tritonload.analysis.report import render_markdown, report_data

from tests.conftest import free_ports
from tests.locust_runs import error_lines, run_json, run_locust
from tritonload.core.config import Target
from tritonload.triton.metrics import metrics_source

MIX = "recommender:3,text_classifier:1"


def _run(triton, tmp_path, *args):
    return run_locust("locustfiles/mixed_models.py", "-u", "2", "-r", "2", "-t", "4s",
                      "--host", f"127.0.0.1:{triton.ports.http}", "--mix", MIX,
                      "--run-dir", str(tmp_path / "run"), *args, cwd=tmp_path)


def test_a_run_samples_the_endpoint_beside_the_statistics(triton, tmp_path):
    proc = _run(triton, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = tmp_path / "run"
    assert run_json(run_dir)["server_metrics"] == {"url": triton.metrics_url, "note": ""}
    samples = pd.read_parquet(run_dir / "server_metrics.parquet")
    names = set(samples["name"])
    assert {"nv_cpu_utilization", "nv_cpu_memory_used_bytes", "nv_cpu_memory_total_bytes",
            "nv_inference_pending_request_count", "nv_inference_request_success",
            "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"} <= names
    assert not any(n.startswith("nv_gpu_") for n in names)  # no GPU on this machine
    cpu = samples[samples["name"] == "nv_cpu_utilization"]["value"]
    assert ((cpu >= 0) & (cpu <= 1)).all() and len(cpu) >= 4
    # One scrape per statistics sample, at the instant the sample closed.
    stats = pd.read_parquet(run_dir / "server_stats.parquet")
    instants = set(stats["t_end_ns"]) | set(stats["t_start_ns"])
    assert set(samples["t_ns"]) <= instants
    # The endpoint and the statistics API count the same successes between the same instants
    # (a request may complete between the two reads of one sample: a few at most).
    success = samples[samples["name"] == "nv_inference_request_success"]
    for model in ("recommender", "text_classifier"):
        series = success[success["model"] == model].sort_values("t_ns")["value"]
        by_metrics = series.iloc[-1] - series.iloc[0]
        by_stats = stats[stats["model"] == model]["success_count"].sum()
        assert by_stats > 20
        assert abs(by_metrics - by_stats) <= 3 + 0.01 * by_stats, (model, by_metrics, by_stats)
    section = render_markdown(report_data(analyze(load_run(run_dir), n_boot=50))).split(
        "## Server resources")[1].split("\n## ")[0]
    assert "No GPU metric in these runs" in section
    run_id = run_json(run_dir)["run_id"]
    (row,) = [ln for ln in section.splitlines() if ln.startswith(f"| {run_id}")]
    assert "%" in row and "steady window" in row


def test_off_reads_nothing_and_says_why(triton, tmp_path):
    proc = _run(triton, tmp_path, "--metrics-url", "off")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert run_json(tmp_path / "run")["server_metrics"] == {"url": None,
                                                           "note": "--metrics-url off"}
    assert not (tmp_path / "run" / "server_metrics.parquet").exists()


@pytest.mark.parametrize("path, says", [
    ("closed", "not reachable"),
    ("/v2", "answers not Prometheus text"),  # Triton's server metadata, in JSON
    ("/v2/health/live", "serves none of Triton's nv_ families"),  # an empty 200
])
def test_a_bad_metrics_url_is_one_line_before_any_load(triton, tmp_path, path, says):
    closed = free_ports(1, start=19900)[0]
    url = (f"http://127.0.0.1:{closed}/metrics" if path == "closed"
           else f"http://127.0.0.1:{triton.ports.http}{path}")
    proc = _run(triton, tmp_path, "--metrics-url", url)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert line.startswith("tritonload: error: --metrics-url: metrics endpoint") and says in line
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "requests").exists()


def test_an_unanswered_default_endpoint_is_skipped_with_one_line(caplog):
    closed = free_ports(3, start=19950)[0]  # nothing listens on port + 2
    with caplog.at_level(logging.WARNING, logger="tritonload.triton.metrics"):
        source = metrics_source(Target("127.0.0.1", closed, closed + 1), None)
    assert source["url"] is None and "not reachable" in source["note"]
    (message,) = caplog.messages
    assert message.startswith(f"metrics endpoint http://127.0.0.1:{closed + 2}/metrics not "
                              "reachable") and "--metrics-url URL" in message


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tritonload.cli", *args], capture_output=True,
                          text=True, timeout=180, cwd=cwd)


def test_summary_latencies_are_read_per_model_and_quantile(tmp_path):
    """`--metrics-config summary_latencies=true` on the embedded server `run` starts."""
    http, grpc, metrics = free_ports(3, start=19820)
    proc = _cli("run", "mixed_models", "--models", "recommender", "--mix", "recommender:1",
                "-u", "2", "-t", "3s", "--http-port", str(http), "--grpc-port", str(grpc),
                "--metrics-port", str(metrics), "--metrics-config", "summary_latencies=true",
                "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    samples = pd.read_parquet(tmp_path / "run" / "server_metrics.parquet")
    queue = samples[(samples["name"] == "nv_inference_queue_summary_us")
                    & (samples["model"] == "recommender")]
    assert set(queue["kind"]) == {"summary"}
    assert {0.5, 0.9, 0.95, 0.99, 0.999} <= set(queue["quantile"])
    last = queue[queue["t_ns"] == queue["t_ns"].max()]
    assert (last["value"] > 0).all()  # µs of queueing, at every quantile
    bad = _cli("run", "--metrics-config", "summary_latency=true", "-t", "3s", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "tritonload: error: --metrics-config summary_latency: unknown setting; known: "
        "counter_latencies, summary_latencies, summary_quantiles, summary_max_age, "
        "summary_age_buckets, histogram_latencies"]
