"""Run every analysis step on a loaded :class:`~analysis.load.RunSet` (no drawing, no I/O)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from tritonload.core.errors import UsageError

from . import (
    batching,
    capacity,
    compare,
    ensembles,
    generation,
    interference,
    metrics,
    shared_memory,
    triton_metrics,
)
from . import outages as downtime
from .load import RunSet

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    """Every DataFrame the report shows, plus the parameters that produced them."""

    runs: pd.DataFrame
    windows: pd.DataFrame
    requests: pd.DataFrame
    errors: pd.DataFrame
    server: pd.DataFrame
    batch_hist: pd.DataFrame
    breakdown: pd.DataFrame
    cdf: pd.DataFrame
    sync_async: pd.DataFrame
    async_claim: dict
    grpc_http: pd.DataFrame
    batching: pd.DataFrame
    shared_wire: pd.DataFrame  # `shared_memory.shared_vs_wire`; empty without both transfers
    curves: pd.DataFrame
    limits: pd.DataFrame | None
    plan: pd.DataFrame | None
    knees: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=capacity.KNEE_COLUMNS))
    probes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=capacity.PROBE_COLUMNS))
    recommendations: list[dict] = field(default_factory=list)
    outages: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=downtime.OUTAGE_COLUMNS))
    timeline: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=downtime.TIMELINE_COLUMNS))
    steps: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=ensembles.STEP_COLUMNS))
    resources: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=triton_metrics.RESOURCE_COLUMNS))
    pending: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=triton_metrics.PENDING_COLUMNS))
    #: run id → why its metrics endpoint was not read (run.json ``server_metrics.note``).
    unread_metrics: dict = field(default_factory=dict)
    #: run id → the extensions its server did not serve (run.json ``extensions``), for runs
    #: against a non-Triton KServe v2 server; runs that lacked none are absent.
    unserved: dict = field(default_factory=dict)
    #: `triton_metrics.resource_table` of the capacity probes (``run_id``: the probe's
    #: run directory, as ``probes.run_dir`` names it).
    probe_resources: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=triton_metrics.RESOURCE_COLUMNS))
    generations: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=generation.GENERATION_TABLE_COLUMNS))
    interference: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=interference.INTERFERENCE_COLUMNS))
    params: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def analyze(
    runset: RunSet,
    *,
    slo_p95_ms: float | None = None,
    target_rps: float | None = None,
    headroom: float = capacity.DEFAULT_HEADROOM,
    max_error_rate: float = capacity.DEFAULT_MAX_ERROR_RATE,
    n_boot: int = 1000,
    seed: int = 0,
    searches: list[dict] | None = None,
    recommendations: list[dict] | None = None,
    probe_metrics: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    slo_ttft_ms: float | None = None,
    slo_itl_ms: float | None = None,
) -> Analysis:
    """Compute all metrics, comparisons and the capacity plan for a run set.

    Args:
        runset: loaded runs (:func:`analysis.load.load_runs`).
        slo_p95_ms: P95 objective in ms; without it no capacity limit is computed.
        target_rps: rate to plan replicas for; needs ``slo_p95_ms``.
        headroom: share of each replica's capacity kept free.
        max_error_rate: highest acceptable error rate of a load level.
        n_boot: bootstrap replicates per statistic.
        seed: bootstrap seed.
        searches: capacity-search documents (search.json), if any.
        recommendations: batching recommendations (recommendations.json), if any.
        probe_metrics: the probes' metrics samples and steady windows
            (:func:`analysis.load.load_probe_metrics`), if any.
        slo_ttft_ms: a generation's own TTFT limit in ms, for goodput.
        slo_itl_ms: a generation's own mean gap limit in ms, for goodput.

    Returns:
        The analysis.

    """
    if not 0 <= headroom < 1:
        raise UsageError(f"headroom must be in [0, 1), got {headroom}")
    if slo_p95_ms is not None and not slo_p95_ms > 0:
        raise UsageError(f"the P95 SLO must be > 0 ms, got {slo_p95_ms}")
    if target_rps is not None and not target_rps > 0:
        raise UsageError(f"the target rate must be > 0 req/s, got {target_rps}")
    windows = metrics.steady_windows(runset.runs)
    requests = metrics.request_metrics(runset.records, windows, runset.runs, n_boot=n_boot,
                                       seed=seed)
    server = metrics.server_metrics(runset.server_stats, windows)
    hist = metrics.batch_histogram(runset.server_batches, windows)
    wire = shared_memory.wire_only(requests)  # a shared-memory cell meets only its wire twin
    svsa = compare.sync_vs_async(wire)
    curves = capacity.capacity_curves(wire)
    limits = plan = None
    if slo_p95_ms is not None:
        limits = capacity.max_throughput_under_slo(
            curves, slo_p95_us=slo_p95_ms * 1000.0, max_error_rate=max_error_rate)
        if target_rps is not None:
            plan = capacity.capacity_plan(limits, target_rps, headroom)
    elif target_rps is not None:
        log.warning("--target-rps needs --slo-p95-ms; no replica plan")
    warnings = list(runset.warnings)
    down = downtime.outage_table(runset.runs, runset.meta)
    if target_rps is not None and slo_p95_ms is None:
        warnings.append("a target rate was given without a P95 SLO: no replica plan")
    return Analysis(
        runs=runset.runs,
        windows=windows,
        requests=requests,
        errors=metrics.error_breakdown(runset.records, windows),
        server=server,
        batch_hist=hist,
        breakdown=metrics.time_breakdown(requests, server),
        cdf=metrics.latency_cdf(requests),
        sync_async=svsa,
        async_claim=compare.async_claim_check(svsa),
        grpc_http=compare.grpc_vs_http(wire),
        batching=batching.batching_comparison(wire, server),
        shared_wire=shared_memory.shared_vs_wire(requests),
        curves=curves,
        limits=limits,
        plan=plan,
        knees=capacity.knee_table(searches or []),
        probes=capacity.probe_table(searches or []),
        recommendations=list(recommendations or []),
        outages=down,
        timeline=downtime.timeline(runset.records, runset.runs,
                                  sorted(set(down["run_id"].astype(str)))),
        steps=ensembles.step_breakdown(runset.server_steps, runset.server_stats, windows),
        resources=triton_metrics.resource_table(runset.server_metrics, windows),
        pending=triton_metrics.pending_series(runset.server_metrics, runset.server_stats,
                                              runset.runs),
        unread_metrics=_unread_metrics(runset),
        unserved=unserved_extensions(runset.meta),
        probe_resources=(triton_metrics.resource_table(*probe_metrics) if probe_metrics
                         else pd.DataFrame(columns=triton_metrics.RESOURCE_COLUMNS)),
        generations=generation.generation_table(runset.generations, windows, slo_ttft_ms,
                                                slo_itl_ms),
        interference=interference.interference_table(runset.records, runset.generations,
                                                     windows),
        params={"slo_p95_ms": slo_p95_ms, "target_rps": target_rps, "headroom": headroom,
                "slo_ttft_ms": slo_ttft_ms, "slo_itl_ms": slo_itl_ms,
                "max_error_rate": max_error_rate, "n_boot": n_boot, "seed": seed,
                "warmup_fraction": metrics.WARMUP_FRACTION,
                "warmup_cap_s": metrics.WARMUP_CAP_S, "confidence": metrics.CONFIDENCE},
        warnings=warnings,
    )


def unserved_extensions(meta: dict[str, dict]) -> dict[str, list[str]]:
    """Per run, the extensions run.json says the server did not serve (older runs: none)."""
    missing = {run_id: sorted(name for name, served in (m.get("extensions") or {}).items()
                              if not served) for run_id, m in meta.items()}
    return {run_id: names for run_id, names in missing.items() if names}


def _unread_metrics(runset: RunSet) -> dict[str, str]:
    """The runs without metrics samples, and why (run.json's note; older runs have none)."""
    read = set(runset.server_metrics["run_id"].astype(str))
    notes = {}
    for run_id, meta in runset.meta.items():
        if run_id not in read:
            note = (meta.get("server_metrics") or {}).get("note")
            notes[run_id] = note or "no metrics endpoint was read for this run"
    return notes
