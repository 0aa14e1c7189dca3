"""What reading Triton's metrics endpoint costs the load generator, per scrape.

The statistics sampler scrapes the endpoint once per ``--stats-interval`` (1 s by default)
inside the Locust process, the one that also sends the load, so its CPU is taken from the
generator. This starts the embedded demo fleet (every model) twice, with the default metrics
and with ``--metrics-config summary_latencies=true`` (per model quantiles: about five times
the rows), drives a few hundred requests so every family has values, then times ``--scrapes``
fetches + parses (`tritonload.triton.metrics`) in this process with ``time.process_time``.

    python benchmarks/metrics_scrape.py [--scrapes 200] [--port 18950]

Prints, per configuration: kept rows per scrape, exposition bytes, CPU µs per scrape (fetch
and parse, then parse alone), and the share of one core at one scrape per second.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tritonload.server import EmbeddedTriton, Ports  # noqa: E402
from tritonload.triton.metrics import fetch_exposition, parse_exposition  # noqa: E402


def warm(server: EmbeddedTriton, requests: int = 200) -> None:
    """A few requests on recommender, so the per-model families have values."""
    client = httpclient.InferenceServerClient(server.http_url)
    inputs = []
    for name in ("user_features", "item_features"):
        tensor = httpclient.InferInput(name, [1, 64], "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 64), np.float32))
        inputs.append(tensor)
    for _ in range(requests):
        client.infer("recommender", inputs)
    client.close()
    time.sleep(1.2)  # one metrics refresh of the embedded server


def cpu_us(work, n: int) -> float:
    """CPU µs per call of ``work`` over ``n`` calls."""
    start = time.process_time()
    for _ in range(n):
        work()
    return (time.process_time() - start) / n * 1e6


def measure(label: str, port: int, scrapes: int, config: tuple[str, ...]) -> None:
    with EmbeddedTriton(ports=Ports(port, port + 1, port + 2), metrics_config=config) as server:
        warm(server)
        text = fetch_exposition(server.metrics_url)
        rows = len(parse_exposition(text))
        both = cpu_us(lambda: parse_exposition(fetch_exposition(server.metrics_url)), scrapes)
        parse = cpu_us(lambda: parse_exposition(text), scrapes)
    print(f"{label:<22} {rows:>5} rows  {len(text) / 1e3:>6.1f} KB  fetch+parse {both:>7.0f} "
          f"µs  parse {parse:>7.0f} µs  at 1/s: {both / 1e6:.2%} of a core", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--port", type=int, default=18950, help="HTTP port (+1 gRPC, +2 metrics)")
    args = parser.parse_args()
    measure("default metrics", args.port, args.scrapes, ())
    measure("summary_latencies=true", args.port, args.scrapes, ("summary_latencies=true",))
    return 0


if __name__ == "__main__":
    sys.exit(main())
