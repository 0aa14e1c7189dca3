"""Soak: the mixed scenario at a steady open-loop rate for 30 minutes; does the client leak?

Starts the embedded demo fleet (loopback, ports 18800-18802 by default), runs
`locustfiles/mixed_models.py` headless in open loop at ``--rate`` req/s for ``--minutes``, and
samples the Locust process every 10 s with psutil: its RSS and its open file descriptors.
At the end it prints

* RSS growth after the first minute (the last sample, and the largest, minus the sample at
  60 s: the first minute holds the imports, the prebuilt requests and the histograms'
  first allocations);
* open file descriptors at 60 s, at the end and at most;
* records lost: Locust's own request count minus the rows in the run directory's Parquet
  parts (and run.json's ``request_count``).

Targets (issue 13): 0 records lost, RSS growth under 50 MB after the first minute.

    python benchmarks/soak.py [--minutes 30] [--rate 200] [--users 8] [--port 18800]

A benchmark, not a CI test: it takes its full duration.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from children import stop_child  # noqa: E402 (benchmarks/, the script's folder)

from tritonload.core.rundir import read_run_json  # noqa: E402
from tritonload.server import EmbeddedTriton, Ports  # noqa: E402

SAMPLE_S = 10.0
SETTLE_S = 60.0
RSS_TARGET_MB = 50.0
MB = 1024 * 1024


def locust_count(run_dir: Path) -> int:
    """Locust's Aggregated request count (its CSV in the run directory)."""
    with open(run_dir / "locust_stats.csv") as handle:
        return int(next(r for r in csv.DictReader(handle)
                        if r["Name"] == "Aggregated")["Request Count"])


def sample(proc: psutil.Process) -> tuple[float, int]:
    """(RSS in MB, open file descriptors) of the Locust process."""
    return proc.memory_info().rss / MB, proc.num_fds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop req/s in total")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--port", type=int, default=18800, help="embedded server HTTP port")
    args = parser.parse_args()
    seconds = int(args.minutes * 60)
    work = Path(tempfile.mkdtemp(prefix="tritonload-soak-"))
    run_dir = work / "run"
    with EmbeddedTriton(ports=Ports(args.port, args.port + 1, args.port + 2),
                        log_file=work / "tritonserver.log"):
        cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfiles/mixed_models.py"),
               "--headless", "--only-summary", "--loglevel", "WARNING",
               "-u", str(args.users), "-r", str(args.users), "-t", f"{seconds}s",
               "--host", f"127.0.0.1:{args.port}", "--mode", "open", "--rate", str(args.rate),
               "--max-in-flight", "16", "--run-dir", str(run_dir)]
        child = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL,
                                 stderr=open(work / "locust.log", "w"))
        proc = psutil.Process(child.pid)
        started = time.monotonic()
        samples: list[tuple[float, float, int]] = []  # (t_s, rss_mb, fds)
        try:
            while child.poll() is None and time.monotonic() - started < seconds + 60:
                try:
                    samples.append((time.monotonic() - started, *sample(proc)))
                except psutil.Error:
                    break
                print(f"{samples[-1][0]:7.0f} s  RSS {samples[-1][1]:7.1f} MB  "
                      f"fds {samples[-1][2]}", flush=True)
                time.sleep(SAMPLE_S)
        except KeyboardInterrupt:
            print("interrupted: stopping the run", flush=True)
        stop_child(child, grace_s=max(0.0, seconds + 60 - (time.monotonic() - started)))
    settled = [s for s in samples if s[0] >= SETTLE_S]
    if not settled:
        print("the run ended before its first minute: nothing to judge")
        return 1
    base = settled[0]
    growth_last = samples[-1][1] - base[1]
    growth_max = max(s[1] for s in settled) - base[1]
    rows = pq.read_table(run_dir / "requests", columns=["ok"]).num_rows
    counted = locust_count(run_dir)
    meta = read_run_json(run_dir)
    lost = counted - rows
    print(f"\nsoak: {args.minutes:g} min at {args.rate:g} req/s open loop, {args.users} users, "
          f"run directory {run_dir}")
    print(f"RSS at {base[0]:.0f} s: {base[1]:.1f} MB; growth after it: {growth_last:+.1f} MB "
          f"at the end, {growth_max:+.1f} MB at most (target < {RSS_TARGET_MB:g} MB)")
    print(f"open fds: {base[2]} at {base[0]:.0f} s, {samples[-1][2]} at the end, "
          f"{max(s[2] for s in samples)} at most")
    print(f"records: {rows} in Parquet, {counted} counted by Locust, run.json "
          f"{meta.get('request_count')}; lost: {lost} (target 0)")
    ok = lost == 0 and growth_max < RSS_TARGET_MB
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
