"""Locust's master/worker mode (`--processes 2`): one run directory, written on the master."""

from __future__ import annotations

import numpy as np
import pytest

from tests.locust_runs import locust_request_count, records, run_json, run_locust
from tritonload.core.numbers import run_numbers

pytestmark = pytest.mark.integration


def test_two_processes_write_one_run_directory_with_every_record(tmp_path, target):
    runs = tmp_path / "runs"
    proc = run_locust("locustfiles/mixed_models.py", "--processes", "2", "-u", "4", "-r", "4",
                      "-t", "4s", "--host", f"{target.host}:{target.http_port}",
                      "--run-dir", str(runs / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not installed" not in proc.stderr
    run_dirs = [p for p in runs.iterdir() if p.is_dir()]
    assert len(run_dirs) == 1, run_dirs  # the master's; the workers keep none
    run_dir = run_dirs[0]
    rows = records(run_dir)
    assert rows.worker.nunique() == 2  # both workers' records, told apart
    assert len(rows) == locust_request_count(run_dir) == run_json(run_dir)["request_count"]
    # The numbers come from the union of the records: per model, exactly numpy's P95.
    numbers = run_numbers(run_dir, by=("model",))
    for (model,), group in numbers.groups.items():
        mine = rows[(rows.model == model) & rows.ok]
        window = numbers.window
        done = mine.intended_start_ns + (mine.latency_us * 1000).astype("int64")
        steady = mine[(done >= window.start_ns) & (done < window.end_ns)]
        assert group.percentile_ms(95) == pytest.approx(
            np.percentile(steady.latency_us, 95) / 1000.0)
