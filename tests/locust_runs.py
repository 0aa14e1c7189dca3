"""Run Locust headless in a subprocess (importing locust would monkey-patch the test process)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def locust_cmd(locustfile: str | Path, *args: str) -> list[str]:
    """The command line for a headless run of a locustfile (path relative to the repo)."""
    return [sys.executable, "-m", "locust", "-f", str(REPO / locustfile), "--headless",
            "--only-summary", "--loglevel", "WARNING", *args]


def run_locust(locustfile: str | Path, *args: str, timeout: float = 120,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run to completion; the run is always bounded by the caller's -t and this timeout."""
    return subprocess.run(locust_cmd(locustfile, *args), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO)


def records(run_dir: Path) -> pd.DataFrame:
    """All request records of a run."""
    return pd.read_parquet(run_dir / "requests")


def run_json(run_dir: Path) -> dict:
    """The run's metadata."""
    return json.loads((run_dir / "run.json").read_text())


def locust_request_count(run_dir: Path) -> int:
    """Locust's own Aggregated request count, from the CSV in the run directory."""
    with open(run_dir / "locust_stats.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["Name"] == "Aggregated"]
    return int(rows[0]["Request Count"])


def error_lines(stderr: str) -> list[str]:
    """Lines a user would read as errors."""
    return [ln for ln in stderr.splitlines() if ln.startswith("tritonload: error:")]
