"""Run a locustfile headless in a child process, with live progress, and summarise the result.

A child process keeps Locust's gevent monkey-patching out of the CLI. Progress comes from the
``live.json`` the child's session rewrites every second in its run directory.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import tritonload
from tritonload.console import console, error_line
from tritonload.errors import UsageError

LOCUSTFILES = Path(tritonload.__file__).resolve().parents[1] / "locustfiles"
GRACE_S = 60.0  # beyond the run time: start-up, payload validation, shutdown


def resolve_scenario(name: str) -> Path:
    """A locustfile path, or the name of one in locustfiles/ (``mixed_models``)."""
    for candidate in (Path(name), LOCUSTFILES / name, LOCUSTFILES / f"{name}.py"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in LOCUSTFILES.glob("*.py")))
    raise UsageError(f"no scenario {name!r}: give a locustfile path or one of: {known}")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``2m`` or ``1h30m`` → seconds."""
    total, number = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for char in text.strip():
        if char.isdigit() or char == ".":
            number += char
        elif char in units and number:
            total, number = total + float(number) * units[char], ""
        else:
            raise UsageError(f"bad duration {text!r}: expected e.g. 60s, 2m, 1h30m")
    total += float(number) if number else 0.0
    if total <= 0:
        raise UsageError(f"bad duration {text!r}: must be > 0")
    return total


@dataclass
class LocustRun:
    """One headless Locust run: what to start and where it writes."""

    locustfile: Path
    host: str
    run_dir: Path
    users: int
    duration_s: float
    spawn_rate: float | None = None
    user_classes: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)  # tritonload options (--mix, --mode, ...)

    def command(self) -> list[str]:
        """The child's command line."""
        rate = self.spawn_rate or max(self.users, 1)
        return [sys.executable, "-m", "locust", "-f", str(self.locustfile), *self.user_classes,
                "--headless", "--only-summary", "--loglevel", "WARNING",
                "-u", str(self.users), "-r", f"{rate:g}", "-t", f"{self.duration_s:g}s",
                "--host", self.host, "--run-dir", str(self.run_dir), *self.options]

    def execute(self, label: str = "load") -> int:
        """Run to the end with a progress line; Ctrl-C stops the child cleanly."""
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      TextColumn("left"), TimeRemainingColumn(), TextColumn("{task.fields[live]}"),
                      console=console, transient=True) as progress:
            task = progress.add_task(label, total=self.duration_s, live="starting…")
            child = subprocess.Popen(self.command(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + self.duration_s + GRACE_S
            try:
                while child.poll() is None:
                    if time.monotonic() > deadline:  # bounded, whatever happens in the child
                        child.terminate()
                    live = _read_live(self.run_dir)
                    if live:
                        p95 = f"{live['p95_ms']:.2f} ms" if live.get("p95_ms") else "-"
                        progress.update(task, completed=min(live["elapsed_s"], self.duration_s),
                                        live=f"{live['rps']:.0f} req/s  P95 {p95}  "
                                        f"{live['requests']} requests, {live['errors']} errors")
                    time.sleep(0.5)
            except KeyboardInterrupt:
                child.send_signal(signal.SIGINT)
                child.wait(timeout=30)
                raise
            _, stderr = child.communicate()
        for line in stderr.splitlines():
            if line.startswith("tritonload: error:"):
                error_line(line.removeprefix("tritonload: error: "))
        if child.returncode not in (0, 1, 3) and not (self.run_dir / "run.json").exists():
            tail = "; ".join(stderr.strip().splitlines()[-3:])
            raise UsageError(f"locust exited with code {child.returncode}: {tail[:400]}")
        return child.returncode


def _read_live(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "live.json").read_text())
    except (OSError, ValueError):
        return None


def percentile_table(records: pd.DataFrame) -> list[dict[str, str]]:
    """Per model and protocol: requests, errors, throughput and exact P50/P95/P99 (ms)."""
    rows = []
    span_s = max((records.start_ns.max() - records.start_ns.min()) / 1e9, 1e-9)
    for (model, protocol), group in records.groupby(["model", "protocol"], observed=True):
        ok = group.latency_us[group.ok].to_numpy()
        p50, p95, p99 = (np.percentile(ok, [50, 95, 99]) / 1000 if len(ok)
                         else (np.nan, np.nan, np.nan))
        rows.append({"model": model, "protocol": protocol, "requests": str(len(group)),
                     "errors": str(int((~group.ok).sum())), "req/s": f"{len(ok) / span_s:.1f}",
                     "P50 ms": f"{p50:.2f}", "P95 ms": f"{p95:.2f}", "P99 ms": f"{p99:.2f}"})
    return rows
