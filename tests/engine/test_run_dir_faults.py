"""A run directory that cannot be written: refused before load, or a clean stop mid-run."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.locust_runs import error_lines, run_locust

pytestmark = pytest.mark.integration


def test_an_unwritable_run_directory_is_one_line_before_any_load(tmp_path, target):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_locust("locustfiles/mixed_models.py", "-u", "1", "-t", "3s",
                      "--host", f"{target.host}:{target.http_port}",
                      "--run-dir", str(blocker / "run"), cwd=tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [
        f"tritonload: error: cannot write run directories in {blocker}: File exists"]
    assert "Traceback" not in proc.stderr and "Ramping" not in proc.stderr  # no load at all


@pytest.fixture
def tiny_disk(tmp_path):
    """A 16 KB tmpfs: room for run.json, not for the request records (needs root to mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs under CI: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_cleanly_and_keeps_it_readable(tiny_disk, target):
    run_dir = tiny_disk / "run"
    proc = run_locust("locustfiles/mixed_models.py", "-u", "2", "-r", "2", "-t", "3s",
                      "--host", f"{target.host}:{target.http_port}", "--run-dir", str(run_dir),
                      cwd=tiny_disk.parent)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert line.startswith(f"tritonload: error: cannot write {run_dir}: ")
    assert "No space left on device" in line and "what was written stays readable" in line
    assert "Traceback" not in proc.stderr
    assert json.loads((run_dir / "run.json").read_text())["run_id"]  # whole, readable
    # The part that did not fit left nothing behind, not even its hidden temporary file:
    # before writes went through a temporary name, a truncated part-00000.parquet stayed and
    # made the whole requests/ directory unreadable.
    assert [p.name for p in (run_dir / "requests").iterdir()] == []
    assert (run_dir / "live.json").exists()
