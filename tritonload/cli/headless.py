"""Run a locustfile headless in a child process, with live progress, and summarise the result.

A child process keeps Locust's gevent monkey-patching out of the CLI. Progress comes from the
``live.json`` the child's session rewrites every second in its run directory.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import tritonload.locustfiles
from tritonload.cli.console import console
from tritonload.core.config import Target
from tritonload.core.errors import ERROR_PREFIX, NOTE_PREFIX, UsageError, print_error
from tritonload.core.options import tls_args
from tritonload.triton.metrics import default_metrics_url

# The scenarios ship inside the package (package data), wherever it is installed.
LOCUSTFILES = Path(tritonload.locustfiles.__file__).resolve().parent
GRACE_S = 60.0  # beyond the run time: start-up, payload validation, shutdown


def resolve_scenario(name: str) -> Path:
    """A locustfile path, or the name of one in locustfiles/ (``mixed_models``)."""
    for candidate in (Path(name), LOCUSTFILES / name, LOCUSTFILES / f"{name}.py"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in LOCUSTFILES.glob("*.py") if p.stem != "__init__"))
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


MASTER_PORT = 5557  # Locust's default


@dataclass(frozen=True)
class Processes:
    """How many Locust processes send the load, and how they find each other.

    One process by default. ``local=N``: Locust's ``--processes N``, N workers forked on this
    host under a master. ``expect_workers=N``: a master (``--master``) that waits, at most
    ``wait_s``, for N workers started elsewhere (``tritonload run --worker``). Either way the
    master alone writes the run directory (`tritonload.load.distributed`).
    """

    local: int = 0
    expect_workers: int = 0
    port: int = MASTER_PORT
    wait_s: float = 60.0

    def __post_init__(self) -> None:
        if self.local < 0 or self.expect_workers < 0:
            raise UsageError("--processes and --expect-workers must be >= 0")
        if self.local and self.expect_workers:
            raise UsageError("--processes and --master do not mix: a master forks no workers "
                             "of its own")
        if not 0 < self.port < 65536:
            raise UsageError(f"--master-port {self.port} is not in 1..65535")
        if self.wait_s <= 0:
            raise UsageError("--worker-wait must be > 0 s")

    @property
    def workers(self) -> int:
        """Worker processes that send the load (0: the one process does)."""
        return self.local or self.expect_workers

    def locust_args(self) -> list[str]:
        """The master's Locust flags."""
        if self.local:
            return ["--processes", str(self.local)]
        if self.expect_workers:
            return ["--master", "--expect-workers", str(self.expect_workers),
                    "--expect-workers-max-wait", f"{self.wait_s:g}",
                    "--master-bind-port", str(self.port)]
        return []


#: The children's note lines shown so far: each is shown once per command.
_SHOWN_NOTES: set[str] = set()


@dataclass
class LocustRun:
    """One headless Locust run: what to start and where it writes."""

    locustfile: Path
    target: Target
    run_dir: Path
    users: int
    duration_s: float
    spawn_rate: float | None = None
    user_classes: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)  # tritonload options (--mix, --mode, ...)
    processes: Processes = field(default_factory=Processes)

    def command(self) -> list[str]:
        """The child's command line."""
        rate = self.spawn_rate or max(self.users, 1)
        return [sys.executable, "-m", "locust", "-f", str(self.locustfile), *self.user_classes,
                "--headless", "--only-summary", "--loglevel", "WARNING",
                "-u", str(self.users), "-r", f"{rate:g}",
                "-t", f"{math.ceil(self.duration_s)}s",  # Locust takes whole seconds
                "--host", self.target.as_url(), "--run-dir", str(self.run_dir),
                *(["--embedded-target"] if self.target.embedded else []),
                *tls_args(self.target.tls), *self._metrics_args(),
                *self.processes.locust_args(), *self.options]

    def _metrics_args(self) -> list[str]:
        """A known metrics port (the embedded server's) is named; else the child derives it."""
        if self.target.metrics_port is None or "--metrics-url" in self.options:
            return []
        return ["--metrics-url", default_metrics_url(self.target)]

    def execute(self, label: str = "load") -> int:
        """Run to the end, showing progress; Ctrl-C stops the child cleanly.

        Returns the child's exit code. A pre-flight error the child reported (exit 2) is
        shown once, as the child's own line.
        """
        with progress_display(label, self.duration_s) as show:
            child = subprocess.Popen(self.command(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            deadline = (time.monotonic() + self.duration_s + GRACE_S
                        + (self.processes.wait_s if self.processes.expect_workers else 0.0))
            try:
                while child.poll() is None:
                    if time.monotonic() > deadline:  # bounded, whatever happens in the child
                        child.terminate()
                    live = _read_live(self.run_dir)
                    if live:
                        p95 = f"{live['p95_ms']:.2f} ms" if live.get("p95_ms") else "-"
                        show(min(live["elapsed_s"], self.duration_s),
                             f"{live['rps']:.0f} req/s  P95 {p95}  "
                             f"{live['requests']} requests, {live['errors']} errors")
                    time.sleep(0.5)
            except KeyboardInterrupt:
                child.send_signal(signal.SIGINT)
                child.wait(timeout=30)
                raise
            _, stderr = child.communicate()
        for line in stderr.splitlines():
            if line.startswith(NOTE_PREFIX) and line not in _SHOWN_NOTES:
                _SHOWN_NOTES.add(line)  # a capacity search's every probe says the same
                console.print(line.removeprefix(NOTE_PREFIX), markup=False)
        reported = [ln for ln in stderr.splitlines() if ln.startswith(ERROR_PREFIX)]
        for line in reported:
            print_error(line.removeprefix(ERROR_PREFIX))
        # A run directory means the run happened (exit 1: Locust saw failed requests; 3: an SLO
        # breach). Without one, a child that said nothing must not end in silence.
        if (child.returncode != 0 and not reported
                and not (self.run_dir / "run.json").exists()):
            tail = "; ".join(stderr.strip().splitlines()[-3:])
            raise UsageError(f"locust exited with code {child.returncode}: {tail[:400]}")
        return child.returncode


@dataclass
class LocustWorker:
    """Locust worker process(es) for a master on another host (``tritonload run --worker``).

    A worker needs no target and keeps no run directory: the master sends it the validated
    context and receives its records. It is bounded by Locust itself: it exits when the
    master quits, when the master's heartbeat stops for 60 s, or after 5 minutes of failing
    to connect.
    """

    locustfile: Path
    master_host: str
    port: int = MASTER_PORT
    processes: int = 0
    user_classes: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        """The child's command line."""
        return [sys.executable, "-m", "locust", "-f", str(self.locustfile), *self.user_classes,
                "--worker", "--master-host", self.master_host, "--master-port", str(self.port),
                "--loglevel", "WARNING",
                *(["--processes", str(self.processes)] if self.processes else [])]

    def execute(self) -> int:
        """Send load until the master ends the run; Ctrl-C stops the worker cleanly."""
        console.print(f"worker: sending load for the master at {self.master_host}:{self.port} "
                      "(it writes the run directory)", markup=False)
        child = subprocess.Popen(self.command(), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            _, stderr = child.communicate()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            child.wait(timeout=30)
            raise
        reported = [ln for ln in stderr.splitlines() if ln.startswith(ERROR_PREFIX)]
        for line in reported:
            print_error(line.removeprefix(ERROR_PREFIX))
        if child.returncode != 0 and not reported:
            tail = "; ".join(stderr.strip().splitlines()[-3:])
            raise UsageError(f"locust worker exited with code {child.returncode}: {tail[:400]}")
        console.print("worker: the master ended the run", markup=False)
        return child.returncode


PLAIN_PROGRESS_EVERY_S = 5.0


@contextlib.contextmanager
def progress_display(label: str, total_s: float) -> Iterator[Callable[[float, str], None]]:
    """Yield ``show(done_s, text)``: a live bar on a terminal, else a plain line every 5 s.

    Piped output (CI logs, files) must stay readable: a redrawn bar there becomes dozens of
    blank lines.
    """
    if console.is_terminal:
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      TextColumn("left"), TimeRemainingColumn(), TextColumn("{task.fields[live]}"),
                      console=console, transient=True) as progress:
            task = progress.add_task(label, total=total_s, live="starting…")
            yield lambda done_s, text: progress.update(task, completed=done_s, live=text)
        return
    last = [-PLAIN_PROGRESS_EVERY_S]

    def show(done_s: float, text: str) -> None:
        now = time.monotonic()
        if now - last[0] >= PLAIN_PROGRESS_EVERY_S:
            last[0] = now
            console.print(f"{label}: {done_s:.0f}/{total_s:.0f} s  {text}", markup=False)

    yield show


def _read_live(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "live.json").read_text())
    except (OSError, ValueError):
        return None
