"""A small server-config sweep produces the ranked recommendation."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import free_ports
from tests.locust_runs import REPO
from tritonload.cli.sweep import ServerConfig, grid, rank


def test_rank_puts_configs_meeting_the_slo_first():
    rows = pd.DataFrame([
        {"config": "a", "level": 1, "throughput_rps": 90, "p95_ms": 5, "error_rate": 0},
        {"config": "a", "level": 16, "throughput_rps": 900, "p95_ms": 80, "error_rate": 0},
        {"config": "b", "level": 1, "throughput_rps": 80, "p95_ms": 6, "error_rate": 0},
        {"config": "b", "level": 16, "throughput_rps": 700, "p95_ms": 30, "error_rate": 0},
        {"config": "c", "level": 1, "throughput_rps": 10, "p95_ms": 120, "error_rate": 0},
    ])
    table = rank(rows, slo_p95_ms=50)
    assert list(table.config) == ["b", "a", "c"]
    assert table.max_rps_within_slo.tolist() == [700, 90, 0]
    assert not table.meets_slo.iloc[-1]


def test_pbtxt_snippet():
    snippet = ServerConfig(100, (8, 16), 2).pbtxt()
    assert "count: 2" in snippet and "preferred_batch_size: [ 8, 16 ]" in snippet
    assert "max_queue_delay_microseconds: 100" in snippet
    assert len(grid([0, 100], [()], [1, 2])) == 4


@pytest.mark.integration
def test_two_delay_sweep_recommends_the_short_delay(tmp_path):
    http, grpc, metrics = free_ports(start=19100)
    out = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "tritonload.cli", "sweep", "--model", "recommender",
         "--delays", "100,100000", "--preferred", "none", "--instances", "1", "--levels", "1,4",
         "--window", "1", "--max-windows", "3", "--slo-p95-ms", "50", "-o", str(out),
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
        capture_output=True, text=True, timeout=400, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "sweep.json").read_text())
    ranking = result["ranking"]
    assert ranking[0]["config"] == "delay100-prefnone-inst1"
    slow = next(r for r in ranking if r["config"] == "delay100000-prefnone-inst1")
    assert slow["p95_ms_at_lowest_load"] > 90  # a lone request waits out the 100 ms delay
    assert ranking[0]["p95_ms_at_lowest_load"] < 20
    assert "max_queue_delay_microseconds: 100\n" in result["best_config_pbtxt"]
    assert "Best: delay100-prefnone-inst1" in proc.stdout
    assert (out / "sweep.md").read_text().count("| delay") == 2
