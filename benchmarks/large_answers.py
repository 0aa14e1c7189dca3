"""Client CPU per request for a 29 MB answer (``wide_ranker``), over each transport alone.

One embedded server serves ``wide_ranker`` (ports ``--port`` .. +2). In this process (no
Locust: the transports alone, on gevent sockets), each transport sends the same request
``--requests`` times per round, one at a time, for ``--rounds`` rounds; this process's CPU
time (user + sys) over a round ÷ its requests is the client CPU per request. It isolates
the receive path of a large answer from everything else a run does.

    python benchmarks/large_answers.py [--requests 30] [--rounds 3] [--port 19560]

Measured when the receive path changed (SO_RCVLOWAT at 1 MB, an unfilled buffer;
`tritonload.wire.sockets.receive_exactly`), 3 rounds of 30: HTTP 12.2 → 7.3 ms and gRPC
11.7 → 7.4 ms per request.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tritonload.core.config import Target  # noqa: E402
from tritonload.server import EmbeddedTriton, Ports, demo_fleet  # noqa: E402
from tritonload.triton.payloads import Payload  # noqa: E402
from tritonload.wire.grpc import GrpcTransport  # noqa: E402
from tritonload.wire.http import HttpTransport  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=19560, help="embedded server HTTP port")
    args = parser.parse_args()
    models = [m for m in demo_fleet() if m.name == "wide_ranker"]
    payload = Payload("wide_ranker", ({"query": np.ones((1, 64), np.float32)},), ("scores",),
                      "benchmark")
    ports = Ports(args.port, args.port + 1, args.port + 2)
    with EmbeddedTriton(models, ports=ports):
        target = Target(host="127.0.0.1", http_port=ports.http, grpc_port=ports.grpc)
        results: dict[str, list[float]] = {}
        for kind in (HttpTransport, GrpcTransport):
            transport = kind(target)
            (prepared,) = transport.prepare(payload)
            try:
                received = transport.send(prepared)  # warm-up: the connection, the model
                for _ in range(args.rounds):
                    cpu, wall = time.process_time(), time.perf_counter()
                    for _ in range(args.requests):
                        transport.send(prepared)
                    per_request_us = (time.process_time() - cpu) / args.requests * 1e6
                    results.setdefault(kind.protocol, []).append(per_request_us)
                    print(f"{kind.protocol:<5} {per_request_us:8.0f} µs CPU/request  "
                          f"{(time.perf_counter() - wall) / args.requests * 1e3:6.1f} ms "
                          f"wall/request  ({received / 1e6:.1f} MB answers)", flush=True)
            finally:
                transport.close()
    print("median client CPU per 29 MB answer: " + ", ".join(
        f"{p} {statistics.median(v) / 1000:.1f} ms" for p, v in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
