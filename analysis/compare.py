"""Comparisons with bootstrap intervals: sync vs async, gRPC vs HTTP, and run A vs run B.

All functions are pure: they take the output of :func:`analysis.metrics.request_metrics`
(whose ``boot_*`` columns hold the bootstrap replicates) and return DataFrames.

Significance rule: a ratio whose 95% interval contains 1, or a difference whose interval
contains 0, is "not significant" and is never called an improvement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .metrics import CONFIDENCE, interval

NOT_SIGNIFICANT = "not significant"
NO_INTERVAL = "no interval"
IMPROVEMENT = "improvement"
REGRESSION = "regression"

#: The published claim checked by :func:`async_claim_check`.
ASYNC_CLAIM = "async gives 3-5x the throughput of sync and a 40% lower P95"
ASYNC_CLAIM_MIN_THROUGHPUT_RATIO = 3.0
ASYNC_CLAIM_MAX_THROUGHPUT_RATIO = 5.0
ASYNC_CLAIM_MAX_P95_RATIO = 0.6


def ratio_interval(
    a: float, b: float, boot_a: np.ndarray, boot_b: np.ndarray, level: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Ratio ``b / a`` with a bootstrap interval from independent replicates of a and b.

    Returns:
        ``(ratio, lo, hi)``; the interval is NaN when either side has no replicates.

    """
    ratio = b / a if a and not math.isnan(a) else math.nan
    boot_a, boot_b = np.asarray(boot_a, float), np.asarray(boot_b, float)
    n = min(len(boot_a), len(boot_b))
    if n == 0:
        return ratio, math.nan, math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = boot_b[:n] / boot_a[:n]
    lo, hi = interval(reps, level)
    return ratio, lo, hi


def difference_interval(
    a: float, b: float, boot_a: np.ndarray, boot_b: np.ndarray, level: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Difference ``b - a`` with a bootstrap interval from independent replicates."""
    boot_a, boot_b = np.asarray(boot_a, float), np.asarray(boot_b, float)
    n = min(len(boot_a), len(boot_b))
    if n == 0:
        return b - a, math.nan, math.nan
    lo, hi = interval(boot_b[:n] - boot_a[:n], level)
    return b - a, lo, hi


def verdict(lo: float, hi: float, *, higher_is_better: bool, null: float = 1.0) -> str:
    """Label an interval of B relative to A.

    Args:
        lo: lower bound of the interval of the ratio (or difference).
        hi: upper bound.
        higher_is_better: whether a larger B is good (throughput) or bad (latency, errors).
        null: the value meaning "no change": 1 for ratios, 0 for differences.

    Returns:
        ``"improvement"``, ``"regression"``, ``"not significant"`` or ``"no interval"``.

    """
    if math.isnan(lo) or math.isnan(hi):
        return NO_INTERVAL
    if lo > null:
        return IMPROVEMENT if higher_is_better else REGRESSION
    if hi < null:
        return REGRESSION if higher_is_better else IMPROVEMENT
    return NOT_SIGNIFICANT


def pair_groups(
    metrics: pd.DataFrame, split: str, a_value: str, b_value: str, on: Sequence[str]
) -> pd.DataFrame:
    """Join groups whose ``split`` column is ``a_value`` with those where it is ``b_value``.

    Returns:
        One row per matching pair, columns suffixed ``_a`` and ``_b``.

    """
    a = metrics[metrics[split].astype(str) == a_value]
    b = metrics[metrics[split].astype(str) == b_value]
    if a.empty or b.empty:
        return pd.DataFrame()
    return a.merge(b, on=list(on), suffixes=("_a", "_b"))


def ratio_columns(pairs: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    """Add B ÷ A throughput and P95 ratios, their intervals and verdicts, to ``out``."""
    tp = [ratio_interval(r.throughput_rps_a, r.throughput_rps_b, r.boot_throughput_a,
                         r.boot_throughput_b) for r in pairs.itertuples(index=False)]
    p95 = [ratio_interval(r.p95_us_a, r.p95_us_b, r.boot_p95_a, r.boot_p95_b)
           for r in pairs.itertuples(index=False)]
    out["throughput_a"] = pairs["throughput_rps_a"].to_numpy()
    out["throughput_b"] = pairs["throughput_rps_b"].to_numpy()
    out["throughput_ratio"], out["throughput_ratio_lo"], out["throughput_ratio_hi"] = (
        zip(*tp, strict=True) if tp else ([], [], []))
    out["throughput_verdict"] = [verdict(lo, hi, higher_is_better=True)
                                 for _, lo, hi in tp]
    out["p95_a_us"] = pairs["p95_us_a"].to_numpy()
    out["p95_b_us"] = pairs["p95_us_b"].to_numpy()
    out["p95_ratio"], out["p95_ratio_lo"], out["p95_ratio_hi"] = (
        zip(*p95, strict=True) if p95 else ([], [], []))
    out["p95_verdict"] = [verdict(lo, hi, higher_is_better=False) for _, lo, hi in p95]
    return out


_LOAD = ["load_kind", "load_level"]


def sync_vs_async(metrics: pd.DataFrame) -> pd.DataFrame:
    """Async (B) against sync (A) at equal load, per model × protocol.

    Returns:
        ``model``, ``protocol``, ``load_kind``, ``load_level``, ``run_a``, ``run_b``,
        ``throughput_a``/``_b``, ``throughput_ratio`` (async ÷ sync) with ``_lo``/``_hi`` and
        ``throughput_verdict``, ``p95_a_us``/``p95_b_us``, ``p95_ratio`` with ``_lo``/``_hi``
        and ``p95_verdict``.

    """
    on = ["model", "protocol", *_LOAD]
    pairs = pair_groups(metrics, "mode", "sync", "async", on)
    if pairs.empty:
        return pd.DataFrame(columns=[*on, "run_a", "run_b"])
    out = pairs[on].copy()
    out["run_a"], out["run_b"] = pairs["run_id_a"].to_numpy(), pairs["run_id_b"].to_numpy()
    return ratio_columns(pairs, out).reset_index(drop=True)


def grpc_vs_http(metrics: pd.DataFrame) -> pd.DataFrame:
    """HTTP (B) against gRPC (A) per model × mode × load, with payload sizes.

    Returns:
        ``model``, ``mode``, ``load_kind``, ``load_level``, ``run_a``, ``run_b``,
        ``mean_bytes_sent``, ``mean_bytes_received`` (per request, from the gRPC side), then
        the ratio columns of :func:`sync_vs_async` (HTTP ÷ gRPC), sorted by bytes sent.

    """
    on = ["model", "mode", *_LOAD]
    pairs = pair_groups(metrics, "protocol", "grpc", "http", on)
    if pairs.empty:
        return pd.DataFrame(columns=[*on, "run_a", "run_b"])
    out = pairs[on].copy()
    out["run_a"], out["run_b"] = pairs["run_id_a"].to_numpy(), pairs["run_id_b"].to_numpy()
    out["mean_bytes_sent"] = pairs["mean_bytes_sent_a"].to_numpy()
    out["mean_bytes_received"] = pairs["mean_bytes_received_a"].to_numpy()
    out = ratio_columns(pairs, out)
    return out.sort_values(["mean_bytes_sent", "model", "load_level"], ignore_index=True)


def _part(lo: float, hi: float, confirm: bool, refute: bool) -> str:
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if confirm:
        return "confirmed"
    if refute:
        return "not confirmed"
    return "inconclusive"


def async_claim_check(pairs: pd.DataFrame) -> dict:
    """Check the published claim "async: 3-5x throughput, P95 -40%" against sync-vs-async pairs.

    Per pair, the throughput part is *confirmed* when the interval of the async/sync
    throughput ratio lies at or above 3 (``exceeds`` when also above 5), *not confirmed*
    when it lies below 3, else *inconclusive*. The P95 part is *confirmed* when the interval
    of the P95 ratio lies at or below 0.6, *not confirmed* when it lies above 0.6, else
    *inconclusive*. A pair confirms the claim only when both parts are confirmed.

    Args:
        pairs: output of :func:`sync_vs_async`.

    Returns:
        ``{"claim", "pairs": [...per-pair dicts...], "confirmed", "not_confirmed",
        "inconclusive", "verdict", "summary"}``; ``verdict`` is ``"confirmed"``,
        ``"not confirmed"``, ``"mixed"``, ``"inconclusive"`` or ``"no data"``.

    """
    rows = []
    for r in pairs.itertuples(index=False):
        tp = _part(r.throughput_ratio_lo, r.throughput_ratio_hi,
                   r.throughput_ratio_lo >= ASYNC_CLAIM_MIN_THROUGHPUT_RATIO,
                   r.throughput_ratio_hi < ASYNC_CLAIM_MIN_THROUGHPUT_RATIO)
        if tp == "confirmed" and r.throughput_ratio_lo > ASYNC_CLAIM_MAX_THROUGHPUT_RATIO:
            tp = "exceeded"
        p95 = _part(r.p95_ratio_lo, r.p95_ratio_hi,
                    r.p95_ratio_hi <= ASYNC_CLAIM_MAX_P95_RATIO,
                    r.p95_ratio_lo > ASYNC_CLAIM_MAX_P95_RATIO)
        if tp in ("confirmed", "exceeded") and p95 == "confirmed":
            overall = "confirmed"
        elif "not confirmed" in (tp, p95):
            overall = "not confirmed"
        else:
            overall = "inconclusive"
        rows.append({
            "model": r.model, "protocol": r.protocol, "load_kind": r.load_kind,
            "load_level": r.load_level, "run_a": r.run_a, "run_b": r.run_b,
            "throughput_a": r.throughput_a, "throughput_b": r.throughput_b,
            "p95_a_us": r.p95_a_us, "p95_b_us": r.p95_b_us,
            "throughput_ratio": r.throughput_ratio,
            "throughput_ratio_lo": r.throughput_ratio_lo,
            "throughput_ratio_hi": r.throughput_ratio_hi, "p95_ratio": r.p95_ratio,
            "p95_ratio_lo": r.p95_ratio_lo, "p95_ratio_hi": r.p95_ratio_hi,
            "throughput_part": tp, "p95_part": p95, "verdict": overall,
        })
    counts = {k: sum(r["verdict"] == k for r in rows)
              for k in ("confirmed", "not confirmed", "inconclusive")}
    if not rows:
        verdict_, summary = "no data", (
            "No sync/async pair at equal load in these runs: the claim cannot be checked.")
    else:
        n = len(rows)
        if counts["confirmed"] == n:
            verdict_ = "confirmed"
        elif counts["not confirmed"] == n:
            verdict_ = "not confirmed"
        elif counts["inconclusive"] == n:
            verdict_ = "inconclusive"
        else:
            verdict_ = "mixed"
        tp = [r["throughput_ratio"] for r in rows]
        p95 = [r["p95_ratio"] for r in rows]
        summary = (
            f"Published claim ({ASYNC_CLAIM}): {verdict_} by this data. "
            f"Of {n} sync/async pairs at equal load, {counts['confirmed']} confirm it, "
            f"{counts['not confirmed']} contradict it, {counts['inconclusive']} are "
            f"inconclusive; async/sync throughput ratio ranges "
            f"{np.nanmin(tp):.2f}x-{np.nanmax(tp):.2f}x and P95 ratio "
            f"{np.nanmin(p95):.2f}-{np.nanmax(p95):.2f} (0.60 would be -40%)."
        )
    return {"claim": ASYNC_CLAIM, "pairs": rows, "confirmed": counts["confirmed"],
            "not_confirmed": counts["not confirmed"], "inconclusive": counts["inconclusive"],
            "verdict": verdict_, "summary": summary}


#: Metrics compared by :func:`compare_runs`: column → (bootstrap column, higher is better,
#: "ratio" or "difference").
AB_METRICS = {
    "throughput_rps": ("boot_throughput", True, "ratio"),
    "p50_us": ("boot_p50", False, "ratio"),
    "p95_us": ("boot_p95", False, "ratio"),
    "p99_us": ("boot_p99", False, "ratio"),
    "error_rate": ("boot_error_rate", False, "difference"),
}


def compare_runs(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Set two runs (or run sets) side by side, metric by metric.

    Groups are matched on model × protocol × mode × load kind × load level. When nothing
    matches and each side has a single load level, groups are matched on model × protocol ×
    mode alone (``load_matched`` is false).

    Args:
        a: :func:`analysis.metrics.request_metrics` of the baseline.
        b: :func:`analysis.metrics.request_metrics` of the candidate.

    Returns:
        Long format: one row per matched group × metric with ``a``, ``b``, ``change`` (B/A − 1
        for ratio metrics, B − A for the error rate), ``change_lo``, ``change_hi``,
        ``kind`` and ``verdict``.

    """
    keys = ["model", "protocol", "mode", *_LOAD]
    a, b = a.copy(), b.copy()
    for f in (a, b):
        for c in ("model", "protocol", "mode", "load_kind"):
            f[c] = f[c].astype(str)
    pairs = a.merge(b, on=keys, suffixes=("_a", "_b"))
    load_matched = True
    if pairs.empty and a["load_level"].nunique() == 1 and b["load_level"].nunique() == 1:
        pairs = a.merge(b, on=keys[:3], suffixes=("_a", "_b"))
        load_matched = False
        pairs["load_kind"] = pairs["load_kind_a"] + "/" + pairs["load_kind_b"]
        pairs["load_level"] = pairs["load_level_a"].map("{:g}".format) + "/" + pairs[
            "load_level_b"].map("{:g}".format)
    rows = []
    for r in pairs.to_dict("records"):
        for metric, (boot, higher_better, kind) in AB_METRICS.items():
            va, vb = r[f"{metric}_a"], r[f"{metric}_b"]
            if kind == "ratio":
                ratio, lo, hi = ratio_interval(va, vb, r[f"{boot}_a"], r[f"{boot}_b"])
                change, clo, chi = ratio - 1, lo - 1, hi - 1
            else:
                change, clo, chi = difference_interval(va, vb, r[f"{boot}_a"], r[f"{boot}_b"])
            rows.append({
                **{k: r[k] for k in keys}, "load_matched": load_matched,
                "metric": metric, "a": va, "b": vb, "change": change, "change_lo": clo,
                "change_hi": chi, "kind": kind,
                "verdict": verdict(clo, chi, higher_is_better=higher_better, null=0.0),
            })
    cols = [*keys, "load_matched", "metric", "a", "b", "change", "change_lo", "change_hi",
            "kind", "verdict"]
    return pd.DataFrame(rows, columns=cols)
