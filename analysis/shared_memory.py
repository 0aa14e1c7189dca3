"""Shared memory against the wire: the same cell with its tensors named, not sent.

A bench with ``shared_memory = ["none", "system"]`` runs every cell twice (`tritonload.cli
.bench`); the runs say which they were (run.json ``shared_memory.kind``, the metrics'
``shared_memory`` column). Each shared-memory group is paired with its wire twin (same
model, protocol, mode, load and users), repetition r with repetition r, and three things
are set side by side, shared ÷ wire:

* throughput and P95, with :func:`analysis.compare.round_ratio_interval` (the bootstrap
  within runs, widened by the spread between rounds);
* client CPU per request: the whole run's CPU over its steady window ÷ the requests done in
  it. A run has one such figure and no bootstrap, so its interval is the Student-t interval
  between rounds alone (NaN with one round).

What shared memory saves grows with the tensors: in ``benchmarks/shared_memory.py`` (4 sync
gRPC users, 2 rounds) client CPU per request fell to 0.55× on ``image_classifier`` (600 KB in)
and to 0.04× on ``wide_ranker`` (29 MB out, outputs in shared memory too), whose throughput
rose 2.6×.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .compare import (
    pair_groups,
    ratio_fields,
    round_ratio_columns,
    round_ratio_interval,
    verdict,
    with_run_attributes,
)

WIRE = "none"
SHARED = "system"

#: Columns of :func:`shared_vs_wire`, in order.
SHARED_WIRE_COLUMNS = [
    "model", "protocol", "mode", "load_kind", "load_level", "users", "cell_a", "cell_b",
    "run_a", "run_b", "rounds", "mean_bytes_sent_a", "mean_bytes_sent_b",
    "mean_bytes_received_a", "mean_bytes_received_b", "throughput_a", "throughput_b",
    "throughput_ratio", "throughput_ratio_lo", "throughput_ratio_hi", "throughput_verdict",
    "p95_a_us", "p95_b_us", "p95_ratio", "p95_ratio_lo", "p95_ratio_hi", "p95_verdict",
    "cpu_a_us", "cpu_b_us", "cpu_ratio", "cpu_ratio_lo", "cpu_ratio_hi", "cpu_verdict",
]


def has_both(metrics: pd.DataFrame) -> bool:
    """Whether the runs hold wire and shared-memory groups (a comparison to make)."""
    if metrics.empty or "shared_memory" not in metrics.columns:
        return False
    kinds = set(metrics["shared_memory"].fillna(WIRE).astype(str))
    return WIRE in kinds and len(kinds) > 1


def wire_only(metrics: pd.DataFrame) -> pd.DataFrame:
    """The wire groups when shared-memory ones sit beside them; else all of them.

    The input of every other comparison: a shared-memory cell is set beside its wire twin
    only, never beside another cell (nor folded into a capacity curve).
    """
    if not has_both(metrics):
        return metrics
    return metrics[metrics["shared_memory"].fillna(WIRE).astype(str) == WIRE].reset_index(
        drop=True)


def _sizes_and_cpu(g: pd.DataFrame) -> dict:
    row = {c: float(g[c].mean()) for c in ("mean_bytes_sent_a", "mean_bytes_sent_b",
                                           "mean_bytes_received_a", "mean_bytes_received_b")}
    cpu_a = g["client_cpu_us_per_request_a"].astype(float)
    cpu_b = g["client_cpu_us_per_request_b"].astype(float)
    none = [np.empty(0)] * len(g)  # one figure per run: no replicates within it
    cpu = round_ratio_interval(cpu_a, cpu_b, none, none)
    fields = ratio_fields("cpu_ratio", cpu)
    row.update(cpu_a_us=float(cpu_a.mean()), cpu_b_us=float(cpu_b.mean()),
               cpu_ratio=fields["cpu_ratio"], cpu_ratio_lo=fields["cpu_ratio_lo"],
               cpu_ratio_hi=fields["cpu_ratio_hi"],
               cpu_verdict=verdict(cpu.lo, cpu.hi, higher_is_better=False))
    return row


def shared_vs_wire(metrics: pd.DataFrame) -> pd.DataFrame:
    """System shared memory (B) against the wire (A), per model × protocol × mode × load.

    Args:
        metrics: :func:`analysis.metrics.request_metrics` with the run attributes.

    Returns:
        :data:`SHARED_WIRE_COLUMNS`: the pairing keys, ``cell_a``/``_b``, ``run_a``/``_b``,
        ``rounds``, the bytes each side sent and received per request, then shared ÷ wire
        ratios of throughput, P95 and client CPU per request (``cpu_a_us``/``_b_us``), each
        with ``_lo``/``_hi`` and a verdict; sorted by bytes on the wire. Empty unless both
        transfers were measured.

    """
    if not has_both(metrics):
        return pd.DataFrame(columns=SHARED_WIRE_COLUMNS)
    m = with_run_attributes(metrics)
    m["shared_memory"] = m["shared_memory"].fillna(WIRE).astype(str)
    on = ["model", "protocol", "mode", "load_kind", "load_level", "users"]
    pairs = pair_groups(m, "shared_memory", WIRE, SHARED, on)
    if pairs.empty:
        return pd.DataFrame(columns=SHARED_WIRE_COLUMNS)
    out = round_ratio_columns(pairs, [*on, "cell_a", "cell_b"], extra=_sizes_and_cpu)
    out["wire_bytes"] = out["mean_bytes_sent_a"] + out["mean_bytes_received_a"]
    out = out.sort_values(["wire_bytes", "model", "protocol", "load_level"],
                          ignore_index=True)
    return out[SHARED_WIRE_COLUMNS]
