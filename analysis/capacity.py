"""Capacity planning: throughput–latency curves, max load under a P95 SLO, replicas.

Pure functions. Over :func:`analysis.metrics.request_metrics` (a load ladder, e.g. `tritonload
report` of runs at several levels), nothing is extrapolated: the answer is always one of the
measured load levels, or a plain statement that the ladder does not contain it. Over capacity
searches (`knee_table`, `probe_table`), the capacity is `tritonload.core.knee`'s: interpolated
between the last passing and the first failing probe, with its 95% interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from tritonload.core.errors import UsageError
from tritonload.core.knee import METRICS

#: Default headroom kept free on each replica.
DEFAULT_HEADROOM = 0.30
#: Default bound on the error rate of an acceptable load level.
DEFAULT_MAX_ERROR_RATE = 0.01

#: ``status`` values of :func:`max_throughput_under_slo`.
WITHIN_SWEEP = "found"
NEVER_CROSSED = "slo never crossed"
NEVER_MET = "slo never met"

_CURVE_KEYS = ["model", "protocol", "mode", "load_kind"]


def capacity_curves(metrics: pd.DataFrame) -> pd.DataFrame:
    """Throughput–latency curve per model × protocol × mode × load kind, ordered by load.

    Repeated runs at one load level stay separate points.

    Returns:
        The curve keys, ``load_level``, ``run_id``, ``throughput_rps`` (+ ``_lo``/``_hi``),
        ``p95_us`` (+ ``p95_lo_us``/``p95_hi_us``), ``p99_us`` and ``error_rate``.

    """
    cols = [*_CURVE_KEYS, "load_level", "run_id", "throughput_rps", "throughput_lo",
            "throughput_hi", "p95_us", "p95_lo_us", "p95_hi_us", "p99_us", "error_rate"]
    if metrics.empty:
        return pd.DataFrame(columns=cols)
    out = metrics[cols].copy()
    for c in (*_CURVE_KEYS, "run_id"):
        out[c] = out[c].astype(str)
    return out.sort_values([*_CURVE_KEYS, "load_level", "run_id"], ignore_index=True)


def max_throughput_under_slo(
    curves: pd.DataFrame,
    *,
    slo_p95_us: float,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
) -> pd.DataFrame:
    """Highest measured throughput whose P95 ≤ SLO and error rate ≤ bound, per curve.

    Load levels are walked in increasing order; the answer is the highest throughput among
    the levels before the first level that breaks the SLO or the error bound (a later level
    that happens to pass again is not trusted). Statuses:

    * ``"found"``: the sweep crossed the SLO; ``max_rps`` is the last good level's.
    * ``"slo never crossed"``: every level met the SLO, so capacity is at least ``max_rps``
      and may be higher: the sweep must go further to tell.
    * ``"slo never met"``: even the lowest level broke it; ``max_rps`` is NaN.

    Args:
        curves: :func:`capacity_curves`.
        slo_p95_us: the P95 objective in microseconds.
        max_error_rate: the highest acceptable error rate (0..1).

    Returns:
        One row per curve: the curve keys, ``status``, ``max_rps``, ``at_load_level``,
        ``p95_at_us``, ``error_rate_at``, ``first_violation_level``, ``violation``,
        ``levels`` (points on the curve) and ``explanation`` (one sentence).

    """
    if not slo_p95_us or slo_p95_us <= 0 or math.isnan(slo_p95_us):
        raise UsageError(f"the P95 SLO must be > 0, got {slo_p95_us}")
    if not 0 <= max_error_rate <= 1:
        raise UsageError(f"the error-rate bound must be in [0, 1], got {max_error_rate}")
    rows = []
    for key, curve in curves.groupby(_CURVE_KEYS, sort=True):
        curve = curve.sort_values(["load_level", "run_id"])
        good = None
        violation = None
        for r in curve.itertuples(index=False):
            reasons = []
            if not r.p95_us <= slo_p95_us:  # NaN P95 (no successes) breaks it too
                reasons.append(f"P95 {r.p95_us / 1000:.3g} ms > SLO {slo_p95_us / 1000:g} ms")
            if not r.error_rate <= max_error_rate:
                reasons.append(f"error rate {r.error_rate:.2%} > {max_error_rate:.2%}")
            if reasons:
                violation = (r, "; ".join(reasons))
                break
            if good is None or r.throughput_rps > good.throughput_rps:
                good = r
        row = dict(zip(_CURVE_KEYS, key, strict=True))
        row["levels"] = len(curve)
        unit = "in flight" if row["load_kind"] == "concurrency" else "req/s offered"
        if good is None:
            r, why = violation
            row.update(status=NEVER_MET, max_rps=math.nan, at_load_level=math.nan,
                       p95_at_us=math.nan, error_rate_at=math.nan,
                       first_violation_level=r.load_level, violation=why)
            row["explanation"] = (
                f"Even the lowest load ({r.load_level:g} {unit}) breaks the objective ({why}); "
                "the sweep must start lower to find the capacity.")
        else:
            row.update(max_rps=good.throughput_rps, at_load_level=good.load_level,
                       p95_at_us=good.p95_us, error_rate_at=good.error_rate)
            if violation is None:
                row.update(status=NEVER_CROSSED, first_violation_level=math.nan,
                           violation="")
                row["explanation"] = (
                    f"The sweep never crossed the SLO: at its highest load "
                    f"({curve['load_level'].max():g} {unit}) P95 was still within it. "
                    f"Capacity is at least {good.throughput_rps:.1f} req/s and may be higher; "
                    "not extrapolated.")
            else:
                r, why = violation
                row.update(status=WITHIN_SWEEP, first_violation_level=r.load_level,
                           violation=why)
                row["explanation"] = (
                    f"Max {good.throughput_rps:.1f} req/s at {good.load_level:g} {unit} "
                    f"(P95 {good.p95_us / 1000:.3g} ms); at {r.load_level:g} {unit}: {why}.")
        rows.append(row)
    cols = [*_CURVE_KEYS, "status", "max_rps", "at_load_level", "p95_at_us", "error_rate_at",
            "first_violation_level", "violation", "levels", "explanation"]
    return pd.DataFrame(rows, columns=cols)


@dataclass(frozen=True)
class ReplicaPlan:
    """Replicas needed for a target rate.

    Attributes:
        target_rps: the rate to serve.
        max_rps: measured capacity of one replica (max throughput under the SLO).
        headroom: share of each replica's capacity kept free.
        usable_rps: ``max_rps × (1 − headroom)``.
        replicas: ``ceil(target_rps / usable_rps)``.
        arithmetic: the computation written out.

    """

    target_rps: float
    max_rps: float
    headroom: float
    usable_rps: float
    replicas: int
    arithmetic: str


def replicas_needed(
    target_rps: float, max_rps: float, headroom: float = DEFAULT_HEADROOM
) -> ReplicaPlan:
    """Compute ``replicas = ceil(target_rps / (max_rps × (1 − headroom)))``.

    Args:
        target_rps: the rate to serve (> 0).
        max_rps: one replica's max throughput under the SLO (> 0).
        headroom: share of capacity kept free, in [0, 1).

    Returns:
        The plan, with the arithmetic written out.

    Raises:
        UsageError: a parameter is out of range.

    """
    if not target_rps > 0:
        raise UsageError(f"the target rate must be > 0 req/s, got {target_rps}")
    if not max_rps > 0:
        raise UsageError(f"the capacity of one replica must be > 0 req/s, got {max_rps}")
    if not 0 <= headroom < 1:
        raise UsageError(f"headroom must be in [0, 1), got {headroom}")
    usable = max_rps * (1.0 - headroom)
    exact = target_rps / usable
    # Guard against 3.0000000000000004 becoming 4 replicas.
    replicas = max(1, math.ceil(round(exact, 9)))
    arithmetic = (
        f"ceil({target_rps:g} / ({max_rps:.1f} × (1 − {headroom:.2f}))) = "
        f"ceil({target_rps:g} / {usable:.1f}) = ceil({exact:.3f}) = {replicas}"
    )
    return ReplicaPlan(target_rps, max_rps, headroom, usable, replicas, arithmetic)


def capacity_plan(
    limits: pd.DataFrame, target_rps: float, headroom: float = DEFAULT_HEADROOM
) -> pd.DataFrame:
    """Replicas needed per curve for ``target_rps``.

    Curves whose SLO was never crossed give an upper bound on replicas (capacity may be
    higher); curves whose SLO was never met give no answer.

    Args:
        limits: :func:`max_throughput_under_slo`.
        target_rps: the rate to serve.
        headroom: share of each replica's capacity kept free.

    Returns:
        The curve keys, ``status``, ``max_rps``, ``target_rps``, ``headroom``, ``usable_rps``,
        ``replicas`` (nullable), ``arithmetic`` and ``note``.

    """
    rows = []
    for r in limits.to_dict("records"):
        row = {k: r[k] for k in _CURVE_KEYS}
        row.update(status=r["status"], max_rps=r["max_rps"], target_rps=target_rps,
                   headroom=headroom)
        if r["status"] == NEVER_MET or not r["max_rps"] > 0:
            row.update(usable_rps=math.nan, replicas=None, arithmetic="",
                       note="no load level met the objective: no capacity to plan with")
        else:
            plan = replicas_needed(target_rps, r["max_rps"], headroom)
            row.update(usable_rps=plan.usable_rps, replicas=plan.replicas,
                       arithmetic=plan.arithmetic,
                       note=("upper bound: the sweep never crossed the SLO, one replica "
                             "may carry more" if r["status"] == NEVER_CROSSED else ""))
        rows.append(row)
    cols = [*_CURVE_KEYS, "status", "max_rps", "target_rps", "headroom", "usable_rps",
            "replicas", "arithmetic", "note"]
    out = pd.DataFrame(rows, columns=cols)
    out["replicas"] = out["replicas"].astype("Int64")
    return out


# ---------------------------------------------------------------------------------------------
# Capacity searches (``tritonload capacity`` / ``bench``): their search.json documents as tables

KNEE_COLUMNS = ["label", "model", "base_model", "protocol", "batching", "config", "objective",
                "status",
                "capacity_rps", "capacity_lo_rps", "capacity_hi_rps", "p95_us", "goodput",
                "at_rps", "probes", "slo_p95_us", "explanation"]
PROBE_COLUMNS = ["label", "model", "base_model", "protocol", "batching", "config", "objective",
                 "offered_rps", "throughput_rps", "requests", "p95_us", "p95_lo_us",
                 "p95_hi_us", "error_rate", "goodput", "trusted", "reasons", "run_dir"]


def _search_keys(doc: dict) -> dict:
    tags = doc.get("tags") or {}
    model = str(doc["model"])
    return {"label": str(doc["label"]), "model": model,
            "base_model": str(tags.get("base_model", model)),
            "protocol": str(doc["protocol"]), "batching": str(tags.get("batching", "on")),
            "config": str(tags.get("config", "current")),
            # What the search judged: request P95, or a generation's TTFT or ITL P95.
            "objective": METRICS[str((doc.get("limits") or {}).get("metric", "latency"))]}


def _nan(value: object) -> float:
    return math.nan if value is None else float(value)


def knee_table(searches: list[dict]) -> pd.DataFrame:
    """One row per search: the knee (capacity within the SLO, its interval) and its keys.

    ``searches`` are search.json documents; ``tags`` may carry ``base_model``, ``batching``
    (on/off) and ``config`` (current/recommended).
    """
    rows = []
    for doc in searches:
        k = doc["knee"]
        rows.append({**_search_keys(doc), "status": k["status"],
                     **{c: _nan(k[c]) for c in ("capacity_rps", "capacity_lo_rps",
                                                "capacity_hi_rps", "p95_us", "goodput",
                                                "at_rps")},
                     "probes": len(k["probes"]),
                     "slo_p95_us": float(doc["limits"]["slo_p95_us"]),
                     "explanation": k["explanation"]})
    return pd.DataFrame(rows, columns=KNEE_COLUMNS)


def probe_table(searches: list[dict]) -> pd.DataFrame:
    """One row per probe of every search, ordered by search and offered rate."""
    rows = []
    for doc in searches:
        keys = _search_keys(doc)
        for p in doc["knee"]["probes"]:
            rows.append({**keys, **{c: _nan(p[c]) for c in (
                "offered_rps", "throughput_rps", "p95_us", "p95_lo_us", "p95_hi_us",
                "error_rate", "goodput")},
                "requests": int(p["requests"]), "trusted": bool(p["trusted"]),
                "reasons": "; ".join(p["reasons"]), "run_dir": p["run_dir"]})
    out = pd.DataFrame(rows, columns=PROBE_COLUMNS)
    return out.sort_values(["label", "offered_rps"], ignore_index=True)


def capacity_ratio(on: pd.Series, off: pd.Series) -> dict:
    """``on ÷ off`` capacities with an interval from both knees' intervals (ends divided).

    Dividing the ends gives a conservative interval (the extremes of both at once); it is
    NaN when either knee has no upper end (a lower bound only).
    """
    ratio = on["capacity_rps"] / off["capacity_rps"] if off["capacity_rps"] > 0 else math.nan
    lo = (on["capacity_lo_rps"] / off["capacity_hi_rps"]
          if off["capacity_hi_rps"] > 0 else math.nan)
    hi = (on["capacity_hi_rps"] / off["capacity_lo_rps"]
          if off["capacity_lo_rps"] > 0 else math.nan)
    if not (lo <= ratio <= hi):
        lo = hi = math.nan
    return {"ratio": ratio, "ratio_lo": lo, "ratio_hi": hi}
