"""Triton's Prometheus metrics endpoint (port 8002): fetched and parsed into long rows.

Why read it when the statistics API is already sampled: the statistics API speaks of models
only. What planning a GPU deployment needs (GPU utilisation, memory used of total, power and
energy, the host's CPU and memory, requests waiting in the scheduler) is on the metrics
endpoint alone, the one Model Analyzer read and perf_analyzer reads with
``--collect-metrics``. The exposition is parsed by prometheus_client's parser
(``text_string_to_metric_families``), not by a regex: label values may hold escaped quotes
and commas, and histograms, counters and gauges all come through one grammar.

Rows are long (one per sample: its name, its family's type, its model or GPU, its bucket
bound or quantile, its value), so a family that a server adds is kept without a schema
change: the latency summaries of ``--metrics-config summary_latencies=true`` (per model
quantiles of request, queue and compute time), the histograms of ``histogram_latencies=true``
(in the Triton that nvidia-pytriton 0.7 ships, only decoupled models' first-response
histogram), a new GPU counter.

What it costs the load generator, which scrapes in its own process (benchmarks/
metrics_scrape.py, the demo fleet of 10 models): 133 kept rows, 12.5 KB, 1.6 ms of CPU per
fetch and parse, 0.16% of a core at one scrape a second; with ``summary_latencies=true``,
483 rows and 5.5 ms (0.55%). The parse runs on the gevent loop, so an open loop's sends can
leave up to that late once a second.
"""

from __future__ import annotations

import logging
import math
import urllib.error
import urllib.request
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

from tritonload.core.config import Target
from tritonload.core.errors import TritonloadError, UsageError

log = logging.getLogger(__name__)

#: The families planning needs: per model (requests, queue and compute time, pending
#: requests, latency summaries and histograms), per GPU (utilisation, memory, power,
#: energy), the host's CPU and memory. Caches, pinned memory and the like are left out.
KEPT_PREFIXES = ("nv_inference_", "nv_gpu_", "nv_energy_", "nv_cpu_")
FETCH_TIMEOUT_S = 2.0


def parse_exposition(text: str, kept: Iterable[str] = KEPT_PREFIXES) -> list[dict]:
    """The kept samples of a Prometheus text exposition as rows.

    Each row: ``name`` (the sample's, e.g. ``nv_gpu_utilization`` or a histogram's
    ``…_bucket``), ``kind`` (its family's type: counter, gauge, histogram...), ``model`` and
    ``gpu`` (the ``model`` and ``gpu_uuid`` labels, "" when
    absent), ``le`` (a histogram bucket's bound), ``quantile`` (a summary's quantile; both NaN
    otherwise) and ``value``. Raises
    `TritonloadError` on text that is not an exposition.
    """
    prefixes = tuple(kept)
    rows = []
    try:
        for family in text_string_to_metric_families(text):
            if not family.name.startswith(prefixes):
                continue
            for sample in family.samples:
                labels = sample.labels
                le, quantile = labels.get("le"), labels.get("quantile")
                # The parser names a counter's samples ``…_total`` (OpenMetrics); Triton's
                # text and docs do not: keep Triton's name.
                name = family.name if sample.name == f"{family.name}_total" else sample.name
                rows.append({"name": name, "kind": family.type,
                             "model": labels.get("model", ""),
                             "gpu": labels.get("gpu_uuid", ""),
                             "le": float(le) if le is not None else math.nan,
                             "quantile": float(quantile) if quantile is not None else math.nan,
                             "value": float(sample.value)})
    except ValueError as exc:
        raise TritonloadError(f"not Prometheus text ({str(exc)[:80]})") from None
    return rows


def fetch_exposition(url: str, timeout_s: float = FETCH_TIMEOUT_S) -> str:
    """GET the metrics text; an unreachable or failing endpoint is one `TritonloadError`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 (a user URL)
            return answer.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        raise TritonloadError(f"metrics endpoint {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TritonloadError(f"metrics endpoint {url} not reachable: {reason}") from None


def default_metrics_url(target: Target) -> str:
    """The target's metrics endpoint: its known port, else Triton's layout.

    Triton's layout: the HTTP port + 2 (8002 beside 8000), or the gRPC port + 1.
    """
    port = (target.metrics_port if target.metrics_port is not None
            else target.http_port + 2 if target.http_port is not None else target.grpc_port + 1)
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"http://{host}:{port}/metrics"


def check_endpoint(url: str) -> int:
    """Fetch and parse once: how many kept samples the endpoint serves.

    Raises `TritonloadError` if it does not answer, or serves none of Triton's families.
    """
    text = fetch_exposition(url)
    try:
        rows = parse_exposition(text)
    except TritonloadError as exc:
        raise TritonloadError(f"metrics endpoint {url} answers {exc}") from None
    if not rows:
        raise TritonloadError(f"metrics endpoint {url} serves none of Triton's nv_ families")
    return len(rows)


def metrics_source(target: Target, given: str | None) -> dict:
    """The metrics endpoint to scrape, as run.json's ``server_metrics``.

    ``--metrics-url`` is checked (one line, exit 2, if it does not answer); the target's
    default is skipped with one line if it does not.
    """
    if given == "off":
        return {"url": None, "note": "--metrics-url off"}
    if given:
        try:
            check_endpoint(given)
        except TritonloadError as exc:
            raise UsageError(f"--metrics-url: {exc}") from None
        return {"url": given, "note": ""}
    url = default_metrics_url(target)
    try:
        check_endpoint(url)
    except TritonloadError as exc:
        log.warning("%s: no GPU/CPU utilisation, memory or energy for this run "
                    "(--metrics-url URL to name the endpoint)", exc)
        return {"url": None, "note": str(exc)}
    return {"url": url, "note": ""}
