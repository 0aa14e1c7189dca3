"""What Locust's 3-significant-digit buckets (`tritonload.load.exact_stats`) cost.

Locust keeps a ``{bucketed ms: count}`` dict per stats entry, and in distributed mode every
worker sends the dict of what it recorded in the last 3 s to the master. Finer buckets mean
more keys: more memory per entry, bigger worker reports, a little more CPU per request. This
script measures all three, for Locust's own bucketing and tritonload's, on latency
distributions shaped like inference traffic. It needs no server and sends no load.

    python benchmarks/locust_buckets.py [--requests 200000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

import msgpack
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from locust import stats  # noqa: E402 (imports gevent's patching: a script, not the CLI)

from tritonload.load.exact_stats import bucket_response_time as three_digits  # noqa: E402

LOCUST_DEFAULT = stats.bucket_response_time
#: Inference latencies in ms: a fast model, a typical one, and a wide mixed tail.
SHAPES = {
    "0.3-1 ms model": lambda rng, n: rng.lognormal(np.log(0.5), 0.3, n),
    "5 ms model": lambda rng, n: rng.lognormal(np.log(5.0), 0.4, n),
    "mixed, 0.5 ms-2 s": lambda rng, n: np.exp(rng.uniform(np.log(0.5), np.log(2000), n)),
}
REPORT_S = 3.0  # Locust's WORKER_REPORT_INTERVAL


def measure(bucket, latencies: np.ndarray, report_rps: float) -> dict[str, float]:
    """Keys, memory and a 3 s worker report's size for one bucketing and one distribution."""
    stats.bucket_response_time = bucket
    values = latencies.tolist()
    timed = stats.RequestStats()
    started = time.perf_counter()
    for value in values:  # timed without tracemalloc, which slows every allocation
        timed.log_request("grpc", "model", value, 100)
    per_request_us = (time.perf_counter() - started) / len(values) * 1e6
    tracemalloc.start()
    entries = stats.RequestStats()
    before = tracemalloc.take_snapshot()
    for value in values:
        entries.log_request("grpc", "model", value, 100)
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    entry = entries.get("model", "grpc")
    # One worker report: the requests of one 3 s interval at ``report_rps``.
    report = stats.RequestStats()
    for value in latencies[: int(report_rps * REPORT_S)].tolist():
        report.log_request("grpc", "model", value, 100)
    report_bytes = len(msgpack.dumps(report.get("model", "grpc").serialize()))
    return {"keys": len(entry.response_times), "memory_kb": grown / 1024,
            "report_bytes": report_bytes, "log_request_us": per_request_us,
            "p95_ms": entry.get_response_time_percentile(0.95),
            "exact_p95_ms": float(np.percentile(latencies, 95))}


def main() -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000,
                        help="requests per stats entry (default 200000)")
    parser.add_argument("--report-rps", type=float, default=2000.0,
                        help="one worker's rate, for the size of its 3 s report (default 2000)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = []
    print(f"{args.requests} requests per entry; a worker report holds {REPORT_S:g} s at "
          f"{args.report_rps:g} req/s")
    print(f"{'distribution':<20} {'bucketing':<10} {'keys':>6} {'memory KB':>10} "
          f"{'report B':>9} {'µs/request':>10} {'P95 ms':>8} {'exact P95':>9}")
    for shape, draw in SHAPES.items():
        latencies = draw(rng, args.requests)
        for name, bucket in (("locust", LOCUST_DEFAULT), ("3 digits", three_digits)):
            figures = measure(bucket, latencies, args.report_rps)
            results.append({"distribution": shape, "bucketing": name, **figures})
            print(f"{shape:<20} {name:<10} {figures['keys']:>6} {figures['memory_kb']:>10.1f} "
                  f"{figures['report_bytes']:>9} {figures['log_request_us']:>10.2f} "
                  f"{figures['p95_ms']:>8g} {figures['exact_p95_ms']:>9.3f}")
    stats.bucket_response_time = LOCUST_DEFAULT
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
