"""GPU and energy arithmetic on a recorded exposition, and its place in the report.

This machine has no GPU, so the GPU families cannot come from the embedded server: the text
below is a two-GPU sample written by hand in the format of Triton's metrics documentation
(``nv_gpu_utilization``, ``nv_gpu_memory_total_bytes`` / ``used_bytes``,
``nv_gpu_power_usage`` in watts, ``nv_energy_consumption`` in joules since start, all
labelled ``gpu_uuid``; per-model counters labelled ``model`` and ``version``). The
integration test against the real endpoint is tests/engine/test_server_metrics.py.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from tritonload.analysis import triton_metrics
from tritonload.analysis.load import load_run
from tritonload.analysis.pipeline import analyze
from tritonload.analysis.report import render_markdown, report_data

from tritonload.core.errors import TritonloadError
from tritonload.core.rundir import write_server_metrics
from tritonload.core.schema import SERVER_METRICS
from tritonload.triton.metrics import parse_exposition

GPUS = ("GPU-3f1c2a7e-0000-1111-2222-333344445555", "GPU-9b0d4e61-6666-7777-8888-999900001111")
NS = 1_000_000_000


def exposition(k: int) -> str:
    """The endpoint's text at the k-th scrape: counters grow, one GPU's memory peaks at k=2."""
    a, b = GPUS
    used_b = 40e9 if k == 2 else 30e9
    return f"""\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{{model="resnet50",version="1"}} {300 * k}
nv_inference_request_success{{model="bert",version="1"}} {100 * k}
# HELP nv_inference_count Number of inferences performed (does not include cached requests)
# TYPE nv_inference_count counter
nv_inference_count{{model="resnet50",version="1"}} {600 * k}
nv_inference_count{{model="bert",version="1"}} {400 * k}
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting ex\
ecution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{{model="resnet50",version="1"}} {k}
nv_inference_pending_request_count{{model="bert",version="1"}} 1
# HELP nv_inference_request_summary_us Summary of inference request duration in microseconds
# TYPE nv_inference_request_summary_us summary
nv_inference_request_summary_us_count{{model="bert",version="1"}} {100 * k}
nv_inference_request_summary_us_sum{{model="bert",version="1"}} {250000 * k}
nv_inference_request_summary_us{{model="bert",version="1",quantile="0.99"}} 4100
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{{gpu_uuid="{a}"}} 0.5
nv_gpu_utilization{{gpu_uuid="{b}"}} 0.7
# HELP nv_gpu_memory_total_bytes GPU total memory, in bytes
# TYPE nv_gpu_memory_total_bytes gauge
nv_gpu_memory_total_bytes{{gpu_uuid="{a}"}} 8.0e+10
nv_gpu_memory_total_bytes{{gpu_uuid="{b}"}} 8.0e+10
# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{{gpu_uuid="{a}"}} 2.0e+10
nv_gpu_memory_used_bytes{{gpu_uuid="{b}"}} {used_b:.1e}
# HELP nv_gpu_power_usage GPU power usage in watts
# TYPE nv_gpu_power_usage gauge
nv_gpu_power_usage{{gpu_uuid="{a}"}} 250
nv_gpu_power_usage{{gpu_uuid="{b}"}} 300
# HELP nv_gpu_power_limit GPU power management limit in watts
# TYPE nv_gpu_power_limit gauge
nv_gpu_power_limit{{gpu_uuid="{a}"}} 400
nv_gpu_power_limit{{gpu_uuid="{b}"}} 400
# HELP nv_energy_consumption GPU energy consumption in joules since the Triton Server started
# TYPE nv_energy_consumption counter
nv_energy_consumption{{gpu_uuid="{a}"}} {5000 + 300 * k}
nv_energy_consumption{{gpu_uuid="{b}"}} {7000 + 200 * k}
# HELP nv_cpu_utilization CPU utilization rate [0.0 - 1.0]
# TYPE nv_cpu_utilization gauge
nv_cpu_utilization 0.25
# HELP nv_cpu_memory_used_bytes CPU used memory (RAM), in bytes
# TYPE nv_cpu_memory_used_bytes gauge
nv_cpu_memory_used_bytes 6.0e+09
# HELP nv_pinned_memory_pool_used_bytes Pinned memory pool used in bytes
# TYPE nv_pinned_memory_pool_used_bytes gauge
nv_pinned_memory_pool_used_bytes 0
"""


def scrapes(run_id: str, start_ns: int, count: int = 3) -> pd.DataFrame:
    """``count`` scrapes one second apart, as the sampler writes them."""
    rows = [{"t_ns": start_ns + k * NS, **row} for k in range(count)
            for row in parse_exposition(exposition(k))]
    return pd.DataFrame(rows, columns=SERVER_METRICS.names).assign(run_id=run_id)


def test_the_parser_keeps_triton_names_labels_and_kinds():
    rows = parse_exposition(exposition(1))
    names = {r["name"] for r in rows}
    # Counters keep Triton's names (the parser would say ..._total); unplanned families go.
    assert "nv_energy_consumption" in names and "nv_inference_count" in names
    assert not any(n.endswith("_total") and "memory" not in n for n in names)
    assert "nv_pinned_memory_pool_used_bytes" not in names
    energy = [r for r in rows if r["name"] == "nv_energy_consumption"]
    assert {(r["gpu"], r["value"], r["kind"]) for r in energy} == {
        (GPUS[0], 5300.0, "counter"), (GPUS[1], 7200.0, "counter")}
    (q99,) = [r for r in rows if r["name"] == "nv_inference_request_summary_us"]
    assert (q99["model"], q99["quantile"], q99["value"], q99["kind"]) == (
        "bert", 0.99, 4100.0, "summary")
    assert math.isnan(q99["le"])
    escaped = parse_exposition('# TYPE nv_inference_count counter\n'
                               'nv_inference_count{model="a\\"b,c",version="1"} 7\n')
    assert escaped[0]["model"] == 'a"b,c'  # a quote and a comma inside a label value
    with pytest.raises(TritonloadError, match="not Prometheus text"):
        parse_exposition("nv_cpu_utilization{ 0.5\n")


def test_gpu_memory_power_and_energy_per_inference():
    frame = scrapes("r1", 100 * NS)
    windows = pd.DataFrame({"run_id": ["r1"], "window_start_ns": [100 * NS],
                            "window_end_ns": [103 * NS]})
    (row,) = triton_metrics.resource_table(frame, windows).to_dict("records")
    assert row["gpus"] == 2 and row["scrapes"] == 3 and row["metrics_window"] == "steady window"
    assert row["gpu_utilization"] == pytest.approx(0.6)  # the mean GPU
    assert row["gpu_memory_used_bytes"] == pytest.approx(60e9)  # both GPUs, at the peak scrape
    assert row["gpu_memory_total_bytes"] == pytest.approx(160e9)
    assert row["gpu_power_w"] == pytest.approx(550.0)  # the deployment's draw
    # Over scrapes 0 → 2: 2 × (300 + 200) J and 2 × (600 + 400) inferences.
    assert row["energy_j"] == pytest.approx(1000.0)
    assert row["joules_per_inference"] == pytest.approx(0.5)
    assert row["inferences_per_joule"] == pytest.approx(2.0)
    assert row["inferences_per_s"] == pytest.approx(1000.0)
    assert row["requests_per_s"] == pytest.approx(400.0)
    assert row["cpu_utilization"] == pytest.approx(0.25)
    assert row["pending_mean"] == pytest.approx(2.0) and row["pending_max"] == 3


def test_a_window_with_one_scrape_uses_the_whole_run_and_says_so():
    frame = scrapes("r1", 100 * NS)
    windows = pd.DataFrame({"run_id": ["r1"], "window_start_ns": [int(100.5 * NS)],
                            "window_end_ns": [int(101.5 * NS)]})
    (row,) = triton_metrics.resource_table(frame, windows).to_dict("records")
    assert row["metrics_window"] == "whole run" and row["energy_j"] == pytest.approx(1000.0)


def test_without_gpus_no_energy_figure_is_made_up():
    cpu_only = scrapes("r1", 100 * NS)
    cpu_only = cpu_only[~cpu_only["name"].str.startswith(("nv_gpu_", "nv_energy_"))]
    windows = pd.DataFrame({"run_id": ["r1"], "window_start_ns": [100 * NS],
                            "window_end_ns": [103 * NS]})
    (row,) = triton_metrics.resource_table(cpu_only, windows).to_dict("records")
    assert row["gpus"] == 0
    assert all(math.isnan(row[k]) for k in ("gpu_utilization", "energy_j",
                                            "joules_per_inference", "gpu_power_w"))


def _report(run_dir):
    return render_markdown(report_data(analyze(load_run(run_dir), n_boot=50)))


def test_the_report_shows_gpus_and_energy_beside_throughput(make_run):
    run_dir = make_run(duration_s=10.0)
    started = int(load_run(run_dir).runs["started_ns"].iloc[0])
    rows = [{"t_ns": started + (2 + k) * NS, **r} for k in range(6)
            for r in parse_exposition(exposition(k))]
    write_server_metrics(run_dir, rows)
    text = _report(run_dir)
    section = text.split("## Server resources")[1].split("\n## ")[0]
    assert "| GPUs | GPU util | GPU memory | power W | J/inference | inferences/J |" in section
    assert "| 2 | 60.00% | 60.0 GB of 160.0 GB | 550.0 | 0.5000 | 2.0 |" in section
    assert "No GPU metric" not in section


def test_the_report_says_in_one_line_when_there_is_no_gpu_or_no_endpoint(make_run):
    cpu_run = make_run(duration_s=10.0)
    started = int(load_run(cpu_run).runs["started_ns"].iloc[0])
    rows = [{"t_ns": started + (2 + k) * NS, **r} for k in range(6)
            for r in parse_exposition(exposition(k)) if not r["name"].startswith(
                ("nv_gpu_", "nv_energy_"))]
    write_server_metrics(cpu_run, rows)
    section = _report(cpu_run).split("## Server resources")[1].split("\n## ")[0]
    assert "No GPU metric in these runs" in section
    assert "| run | load | server req/s | CPU util | CPU memory | pending mean |" in section
    bare = make_run(duration_s=10.0)  # a run without server_metrics.parquet
    section = _report(bare).split("## Server resources")[1].split("\n## ")[0]
    assert "metrics not read (no metrics endpoint was read for this run)" in section
