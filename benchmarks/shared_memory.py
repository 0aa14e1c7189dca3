"""What ``--shared-memory system`` saves: tensors over the wire vs named in shared memory.

One embedded server serves the two large-tensor demo models: ``image_classifier`` (a
602,112-byte FP32 image in, 4 KB of scores out) and ``wide_ranker`` (a 28,755,968-byte
scores tensor out). For each, the same closed loop runs twice, alternated over ``--rounds``
rounds with the order flipped every round: a headless Locust child on
`locustfiles/bench.py`, ``--users`` sync users of ``--protocol`` (default gRPC), first with
the tensors on the wire, then with ``--shared-memory system`` (and, for ``wide_ranker``,
``--output-shared-memory-size`` so the answer's tensor lands in shared memory too).

Measured as in ``vs_perf_analyzer.py`` (its sampler and window, reused): throughput from the
server's success count, client and server CPU per request from psutil, P95 from the run's
records. The demo models sleep for their compute (8 ms and 2 ms a batch), so throughput is
bounded by the sleep and the copies; CPU per request is what shared memory changes.

    python benchmarks/shared_memory.py [--users 4] [--window 8] [--warmup 2] [--rounds 2]

Prints each run, then per model the medians and the shared / wire ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vs_perf_analyzer import LOCUST, Measure, measure_locust  # noqa: E402

# model → the options of its shared-memory run
CASES = {
    "image_classifier": ["--shared-memory", "system"],
    "wide_ranker": ["--shared-memory", "system", "--output-shared-memory-size", "30000000"],
}


def run_once(model: str, label: str, extra: list[str], server: psutil.Process, http_port: int,
             args: argparse.Namespace, workdir: Path) -> Measure:
    """One closed-loop Locust run on ``model``; the window starts ``warmup`` s in."""
    run_dir = workdir / f"{model}-{label}-{time.time_ns()}"
    duration = int(args.warmup + args.window + 2)
    user_class = "Grpc" if args.protocol == "grpc" else "Http"
    cmd = [str(LOCUST), "-f", str(ROOT / "locustfiles" / "bench.py"), user_class,
           "--mix", f"{model}:1", "--mode", "sync",
           "--headless", "-u", str(args.users), "-r", "1000", "-t", f"{duration}s",
           "--host", f"127.0.0.1:{http_port}", *extra, "--run-dir", str(run_dir),
           "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "2"]
    return measure_locust(label, cmd, run_dir, workdir / f"{run_dir.name}.log", server,
                          http_port, args.warmup, args.window, duration, model=model)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=4, help="sync users (default 4)")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--window", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds dropped at start")
    parser.add_argument("--rounds", type=int, default=2, help="wire/shared pairs (default 2)")
    parser.add_argument("--port", type=int, default=18760,
                        help="the server's HTTP port (gRPC +1, metrics +2)")
    args = parser.parse_args()

    from tritonload.server import EmbeddedTriton, Ports, demo_fleet

    models = [m for m in demo_fleet() if m.name in CASES]
    p = args.port
    server = EmbeddedTriton(models=models, ports=Ports(p, p + 1, p + 2))
    results: dict[tuple[str, str], list[Measure]] = {}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tl-shm-") as work:
        try:
            server.start()
            process = psutil.Process(server.pid)
            print(f"server ready ({time.monotonic() - began:.0f}s)", flush=True)
            for round_ in range(args.rounds):
                for model, shared in CASES.items():
                    order = [("wire", []), ("shared", shared)]
                    for label, extra in order if round_ % 2 == 0 else order[::-1]:
                        m = run_once(model, label, extra, process, p, args, Path(work))
                        results.setdefault((model, label), []).append(m)
                        print(f"round {round_ + 1} {model:<16} {label:<6} {m.rps:6.0f} rps  "
                              f"p95 {m.p95_ms:6.2f} ms  client {m.cpu_us:7.1f} µs/req  "
                              f"server {m.server_cpu_us:7.1f} µs/req  errors {m.errors} "
                              f"{m.note}", flush=True)
        finally:
            server.stop()

    def median(model: str, label: str, what: str) -> float:
        return statistics.median(getattr(m, what) for m in results[(model, label)])

    print(f"\nmedians of {args.rounds} runs each, {args.users} sync {args.protocol} users:")
    for model in CASES:
        line = [f"  {model:<16}"]
        for what, unit in (("rps", "req/s"), ("cpu_us", "client µs/req"),
                           ("server_cpu_us", "server µs/req"), ("p95_ms", "P95 ms")):
            wire, shared = median(model, "wire", what), median(model, "shared", what)
            line.append(f"{unit} {wire:.1f} → {shared:.1f} ({shared / wire:.2f}x)")
        print("  ".join(line))
    print(f"total {time.monotonic() - began:.0f}s")
    errors = sum(m.errors for ms in results.values() for m in ms)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
