"""Synthetic run directories with known distributions, for tests and benchmarks.

The generator writes the run-directory format described in ``docs/run-directory.md``
(version 1) without a server: arrivals are Poisson per model, latencies are log-normal with
a chosen median and shape, failures are Bernoulli, and the server statistics are derived
from the same parameters so that the numbers are internally consistent.

Everything is reproducible from ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from tritonload.core import schema
from tritonload.core.rundir import iso, write_request_part, write_run_json, write_server_stats

_START_NS = 1_700_000_000_000_000_000


@dataclass(frozen=True)
class SyntheticModel:
    """Parameters of one model's traffic in a synthetic run.

    Attributes:
        name: model name.
        rate_rps: mean arrival rate (requests per second, Poisson).
        latency_median_us: median of the log-normal client latency.
        latency_sigma: shape (sigma of the underlying normal) of the log-normal.
        error_rate: probability that a request fails.
        error_kinds: kinds drawn uniformly for failed requests.
        bytes_sent: payload bytes per request.
        bytes_received: response bytes per request.
        server_fraction: share of the mean client latency spent inside Triton
            (queue + compute); the rest is client overhead.
        queue_share: share of the server time spent queueing.
        batch_sizes: batch-size histogram as ``{size: weight}``; ``{1: 1}`` means no batching.
        max_batch_size: served ``max_batch_size``.
        dynamic_batching: served dynamic batching config, ``None`` when off.

    """

    name: str
    rate_rps: float = 100.0
    latency_median_us: float = 5_000.0
    latency_sigma: float = 0.3
    error_rate: float = 0.0
    error_kinds: tuple[str, ...] = ("timeout",)
    bytes_sent: int = 1024
    bytes_received: int = 64
    server_fraction: float = 0.7
    queue_share: float = 0.3
    batch_sizes: dict[int, float] = field(default_factory=lambda: {1: 1.0})
    max_batch_size: int = 8
    dynamic_batching: dict | None = None

    def __post_init__(self) -> None:
        if self.rate_rps <= 0 or self.latency_median_us <= 0 or self.latency_sigma < 0:
            raise ValueError(f"bad synthetic model parameters for {self.name!r}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1] for {self.name!r}")

    def latency_quantile_us(self, q: float) -> float:
        """Return the true q-quantile (0 < q < 1) of this model's latency distribution."""
        z = _normal_ppf(q)
        return float(self.latency_median_us * math.exp(self.latency_sigma * z))

    @property
    def mean_latency_us(self) -> float:
        """True mean of the log-normal latency distribution."""
        return float(self.latency_median_us * math.exp(self.latency_sigma**2 / 2))


def _normal_ppf(q: float) -> float:
    """Inverse of the standard normal CDF (Acklam's rational approximation, |err| < 1e-9)."""
    if not 0.0 < q < 1.0:
        raise ValueError("q must be in (0, 1)")
    a = [-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
         1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00]
    b = [-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
         6.680131188771972e01, -1.328068155288572e01]
    c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
         -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00]
    d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
         3.754408661907416e00]
    lo = 0.02425
    if q < lo:
        t = math.sqrt(-2 * math.log(q))
        return (((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) / (
            (((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1
        )
    if q > 1 - lo:
        return -_normal_ppf(1 - q)
    r = q - 0.5
    s = r * r
    return (((((a[0] * s + a[1]) * s + a[2]) * s + a[3]) * s + a[4]) * s + a[5]) * r / (
        ((((b[0] * s + b[1]) * s + b[2]) * s + b[3]) * s + b[4]) * s + 1
    )


def write_synthetic_run(
    run_dir: str | Path,
    models: list[SyntheticModel],
    *,
    protocol: str = "grpc",
    mode: str = "sync",
    load_kind: str = "concurrency",
    load_level: float = 1,
    duration_s: float = 30.0,
    warmup_s: float = 0.0,
    seed: int = 0,
    run_id: str | None = None,
    target_url: str = "grpc://localhost:8001",
    embedded: bool = False,
    chunk_rows: int = 1_000_000,
    stats_interval_s: float = 1.0,
    start_ns: int = _START_NS,
    extra: dict | None = None,
) -> Path:
    """Write a valid run directory whose records follow known distributions.

    Args:
        run_dir: directory to create (parents included); must not hold a run already.
        models: traffic of each model.
        protocol: ``"grpc"`` or ``"http"``, for every record.
        mode: ``"sync"``, ``"async"`` or ``"open"``.
        load_kind: ``"concurrency"`` or ``"rate"``.
        load_level: concurrency (users × max in flight; async runs use 4 in flight per
            user) or requests per second.
        duration_s: seconds of load (``ended_ns - started_ns``).
        warmup_s: value written to ``run.json`` (0 lets the analysis apply its own rule).
        seed: seed of every random draw.
        run_id: run id; derived from ``seed`` when omitted.
        target_url: ``target.url`` in ``run.json``.
        embedded: ``target.embedded`` in ``run.json``.
        chunk_rows: records per ``requests/part-*.parquet`` file.
        stats_interval_s: period of the synthetic server-statistics intervals.
        start_ns: wall clock of the start of load.
        extra: free-form ``extra`` object.

    Returns:
        The run directory.

    """
    run_dir = Path(run_dir)
    (run_dir / "requests").mkdir(parents=True, exist_ok=True)
    max_in_flight = 1 if mode == "sync" else 4
    rng = np.random.default_rng(seed)
    dur_ns = int(duration_s * 1e9)
    end_ns = start_ns + dur_ns
    run_id = run_id or f"20240101-000000-{seed:06x}"

    # Arrivals: Poisson counts per model, uniform times, merged and time-ordered.
    counts = [int(rng.poisson(m.rate_rps * duration_s)) for m in models]
    total = int(sum(counts))
    model_idx = np.repeat(np.arange(len(models), dtype=np.int32), counts)
    starts = start_ns + (rng.random(total) * dur_ns).astype(np.int64)
    order = np.argsort(starts, kind="stable")
    starts = starts[order]
    model_idx = model_idx[order]

    part = 0
    for lo in range(0, max(total, 1), chunk_rows):
        hi = min(lo + chunk_rows, total)
        if hi <= lo:
            break
        write_request_part(run_dir, part, _record_chunk(
            rng, models, starts[lo:hi], model_idx[lo:hi], protocol, mode))
        part += 1
    if total == 0:
        write_request_part(run_dir, 0, schema.REQUESTS.empty_table())

    _write_server_files(run_dir, rng, models, start_ns, end_ns, stats_interval_s, duration_s)

    meta = {
        "run_id": run_id,
        "tool_versions": {"tritonload": "synthetic", "python": "3"},
        "scenario": "synthetic",
        "target": {
            "url": target_url,
            "http_url": target_url.replace("grpc://", "http://"),
            "grpc_url": target_url,
            "embedded": embedded,
        },
        "protocols": [protocol],
        "mode": mode,
        "max_in_flight": max_in_flight,
        "load": {"kind": load_kind, "level": load_level},
        "users": max(1, int(load_level) // max_in_flight) if load_kind == "concurrency" else 0,
        "mix": {m.name: m.rate_rps for m in models},
        "achieved_mix": {
            m.name: (c / total if total else 0.0) for m, c in zip(models, counts, strict=True)
        },
        "warmup_s": warmup_s,
        "started_ns": start_ns,
        "ended_ns": end_ns,
        "started_at": iso(start_ns),
        "ended_at": iso(end_ns),
        "request_count": total,
        "models": {
            m.name: {
                "max_batch_size": m.max_batch_size,
                "dynamic_batching": m.dynamic_batching,
                "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
            }
            for m in models
        },
        "server_stats_interval_s": stats_interval_s,
        "gevent_threadpool_size": 10,
        "extra": extra or {},
    }
    write_run_json(run_dir, meta)
    return run_dir


def _record_chunk(
    rng: np.random.Generator,
    models: list[SyntheticModel],
    starts: np.ndarray,
    model_idx: np.ndarray,
    protocol: str,
    mode: str,
) -> pa.Table:
    n = len(starts)
    median = np.array([m.latency_median_us for m in models])[model_idx]
    sigma = np.array([m.latency_sigma for m in models])[model_idx]
    latency = median * np.exp(sigma * rng.standard_normal(n))
    err_p = np.array([m.error_rate for m in models])[model_idx]
    ok = rng.random(n) >= err_p
    # Error kinds: one dictionary over all models' kinds.
    kinds = [""] + sorted({k for m in models for k in m.error_kinds})
    kind_idx = np.zeros(n, dtype=np.int32)
    bad = np.flatnonzero(~ok)
    if bad.size:
        for i, m in enumerate(models):
            sel = bad[model_idx[bad] == i]
            choices = np.array([kinds.index(k) for k in m.error_kinds], dtype=np.int32)
            kind_idx[sel] = choices[rng.integers(0, len(choices), sel.size)]
    names = pa.array([m.name for m in models], pa.string())

    def dict_col(idx: np.ndarray, values: pa.Array) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(idx, pa.int32()), values).cast(pa.string())

    def const_col(value: str) -> pa.Array:
        return dict_col(np.zeros(n, dtype=np.int32), pa.array([value], pa.string()))

    return pa.table(
        {
            "intended_start_ns": starts,
            "start_ns": starts,
            "latency_us": latency,
            "service_us": latency,
            "model": dict_col(model_idx, names),
            "protocol": const_col(protocol),
            "mode": const_col(mode),
            "ok": ok,
            "error_kind": dict_col(kind_idx, pa.array(kinds, pa.string())),
            "bytes_sent": np.array([m.bytes_sent for m in models], np.int64)[model_idx],
            "bytes_received": np.array([m.bytes_received for m in models], np.int64)[model_idx],
            "user_id": rng.integers(0, 16, n, dtype=np.int32),
            "worker": const_col("local"),
            **{c: pa.nulls(n, schema.REQUESTS.field(c).type)
               for c in schema.GENERATION_COLUMNS},
        },
        schema=schema.REQUESTS,
    )


def _write_server_files(
    run_dir: Path,
    rng: np.random.Generator,
    models: list[SyntheticModel],
    start_ns: int,
    end_ns: int,
    interval_s: float,
    duration_s: float,
) -> None:
    step = int(interval_s * 1e9)
    bounds = np.arange(start_ns, end_ns + 1, step, dtype=np.int64)
    if bounds[-1] < end_ns:
        bounds = np.append(bounds, end_ns)
    stats: dict[str, list] = {name: [] for name in schema.SERVER_STATS.names}
    batches: dict[str, list] = {name: [] for name in schema.SERVER_BATCHES.names}
    for t0, t1 in zip(bounds[:-1], bounds[1:], strict=True):
        width = (t1 - t0) / 1e9
        for m in models:
            reqs = int(rng.poisson(m.rate_rps * width))
            fails = int(rng.binomial(reqs, m.error_rate)) if reqs else 0
            ok = reqs - fails
            server_us = m.mean_latency_us * m.server_fraction
            queue_us = server_us * m.queue_share
            compute_us = server_us - queue_us
            sizes = np.array(sorted(m.batch_sizes), dtype=np.int64)
            weights = np.array([m.batch_sizes[s] for s in sizes], dtype=float)
            weights = weights / weights.sum()
            mean_batch = float((sizes * weights).sum())
            execs = int(round(ok / mean_batch))
            per_size = rng.multinomial(execs, weights) if execs else np.zeros(len(sizes), int)
            inferences = int((per_size * sizes).sum())
            for key, value in (
                ("t_start_ns", int(t0)), ("t_end_ns", int(t1)), ("model", m.name),
                ("success_count", ok), ("fail_count", fails),
                ("inference_count", inferences), ("execution_count", int(per_size.sum())),
                ("queue_ns", int(ok * queue_us * 1000)),
                ("compute_input_ns", int(ok * compute_us * 0.1 * 1000)),
                ("compute_infer_ns", int(ok * compute_us * 0.8 * 1000)),
                ("compute_output_ns", int(ok * compute_us * 0.1 * 1000)),
                ("queue_count", ok), ("compute_input_count", ok),
                ("compute_infer_count", ok), ("compute_output_count", ok),
            ):
                stats[key].append(value)
            for size, n_exec in zip(sizes, per_size, strict=True):
                if n_exec == 0:
                    continue
                batches["t_start_ns"].append(int(t0))
                batches["t_end_ns"].append(int(t1))
                batches["model"].append(m.name)
                batches["batch_size"].append(int(size))
                batches["executions"].append(int(n_exec))
                batches["compute_infer_ns"].append(int(n_exec * compute_us * 0.8 * 1000))
    write_server_stats(run_dir, stats, batches)
