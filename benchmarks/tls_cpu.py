"""What TLS adds to the client's CPU per request on gRPC: plain vs grpcs:// on ``recommender``.

Two embedded servers serve ``recommender`` alone, identical but for TLS on gRPC: one plain
(ports ``--port`` .. +2), one with `GrpcTls` (a trustme CA and a certificate for 127.0.0.1,
made at start; ports +10 .. +12). Only one is loaded at a time; the idle one costs nothing.
Each run is the same closed loop: a headless Locust child on `locustfiles/bench.py`, ``Grpc``
users in sync mode (``--users``, default 16), ``--host grpc://…`` or ``grpcs://…`` with
``--tls-ca``. Runs alternate plain / TLS for ``--rounds`` rounds, the order flipped every
round, so a drift of the shared machine lands on both.

Measured as in ``vs_perf_analyzer.py`` (its sampler, reused): every 0.5 s the child's CPU
time (user + sys, all threads, psutil) and the loaded server's ``success`` count (Triton's
statistics over its plain HTTP port); over a window that skips ``--warmup`` s, client CPU per
request = Δclient CPU ÷ Δsuccess. Connections are kept alive, so the handshakes (one per
user) fall in the warm-up; the window shows the per-request cost: encryption and the TLS
layer's extra copies and syscalls.

    python benchmarks/tls_cpu.py [--users 16] [--window 10] [--warmup 3] [--rounds 2]

Prints µs of client CPU per request, throughput and P95 for both, and the TLS / plain ratio.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vs_perf_analyzer import LOCUST, MODEL, Measure, measure_locust  # noqa: E402


def _certificates(folder: Path) -> dict[str, str]:
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    return {name: str(path) for name, path in files.items()}


def run_once(label: str, host: str, extra: list[str], server: psutil.Process, http_port: int,
             args: argparse.Namespace, workdir: Path) -> Measure:
    """One closed-loop Locust run against ``host``; the window starts ``warmup`` s in."""
    run_dir = workdir / f"{label}-{time.time_ns()}"
    duration = int(args.warmup + args.window + 2)
    cmd = [str(LOCUST), "-f", str(ROOT / "locustfiles" / "bench.py"), "Grpc",
           "--mix", f"{MODEL}:1", "--mode", "sync",
           "--headless", "-u", str(args.users), "-r", "1000", "-t", f"{duration}s",
           "--host", host, *extra, "--run-dir", str(run_dir),
           "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "2"]
    return measure_locust(label, cmd, run_dir, workdir / f"{run_dir.name}.log", server,
                          http_port, args.warmup, args.window, duration)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16, help="sync gRPC users (default 16)")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds dropped at start")
    parser.add_argument("--rounds", type=int, default=2, help="plain/TLS pairs (default 2)")
    parser.add_argument("--port", type=int, default=18740,
                        help="plain server's HTTP port (gRPC +1, metrics +2); the TLS "
                        "server's are +10 .. +12")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    from tritonload.server import EmbeddedTriton, GrpcTls, Ports, demo_fleet

    workdir = Path(tempfile.mkdtemp(prefix="tl-tls-cpu-"))
    files = _certificates(workdir)
    models = [m for m in demo_fleet() if m.name == MODEL]
    p = args.port
    plain = EmbeddedTriton(models=models, ports=Ports(p, p + 1, p + 2))
    tls = EmbeddedTriton(models=models, ports=Ports(p + 10, p + 11, p + 12),
                         grpc_tls=GrpcTls(files["cert"], files["key"]))
    setups = {
        "plain": (plain, f"grpc://127.0.0.1:{p + 1}", []),
        "tls": (tls, f"grpcs://127.0.0.1:{p + 11}", ["--tls-ca", files["ca"]]),
    }
    results: dict[str, list[Measure]] = {"plain": [], "tls": []}
    began = time.monotonic()
    try:
        plain.start()
        tls.start()
        print(f"servers ready ({time.monotonic() - began:.0f}s); work dir {workdir}", flush=True)
        for round_ in range(args.rounds):
            order = ["plain", "tls"] if round_ % 2 == 0 else ["tls", "plain"]
            for label in order:
                server, host, extra = setups[label]
                m = run_once(label, host, extra, psutil.Process(server.pid), server.ports.http,
                             args, workdir)
                results[label].append(m)
                print(f"round {round_ + 1} {label:<5} {m.rps:7.0f} rps  p95 {m.p95_ms:6.2f} ms  "
                      f"client {m.cpu_us:6.1f} µs/req  server {m.server_cpu_us:6.1f} µs/req  "
                      f"errors {m.errors}  other {m.other_cores:.2f} cores {m.note}",
                      flush=True)
    finally:
        plain.stop()
        tls.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    cpu = {label: statistics.median(m.cpu_us for m in ms) for label, ms in results.items()}
    rps = {label: statistics.median(m.rps for m in ms) for label, ms in results.items()}
    print(f"\nclient CPU per request (median of {args.rounds} runs each, {args.users} sync "
          f"gRPC users, {MODEL}):")
    for label in ("plain", "tls"):
        print(f"  {label:<5} {cpu[label]:7.1f} µs/request  at {rps[label]:6.0f} req/s")
    print(f"  TLS / plain = {cpu['tls'] / cpu['plain']:.2f}x  "
          f"(+{cpu['tls'] - cpu['plain']:.1f} µs/request)")
    print(f"total {time.monotonic() - began:.0f}s")
    errors = sum(m.errors for ms in results.values() for m in ms)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
