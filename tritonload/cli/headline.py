"""The bench's headline: one row per model, the numbers a platform engineer asks first.

Pure: takes an `analysis.pipeline.Analysis`, returns printable rows. Ratios are read at the
highest load level the matrix measured, where the differences matter most.
"""

from __future__ import annotations

import math

import pandas as pd

from tritonload.server.fleet import NOBATCH_SUFFIX

ALL_MODELS = "(all models)"


def _at_top_level(frame: pd.DataFrame) -> pd.DataFrame:
    if frame is None or frame.empty or "load_level" not in frame:
        return pd.DataFrame()
    return frame[frame.load_level == frame.load_level.max()]


def _ratio(row: pd.Series, column: str, verdict_column: str, as_change: bool = False) -> str:
    """``1.23×`` (or ``+23%`` as a change), marked when not significant."""
    value = row[column]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{(value - 1) * 100:+.0f}%" if as_change else f"{value:.2f}×"
    return text + (" (n.s.)" if row.get(verdict_column) == "not significant" else "")


def _join(frame: pd.DataFrame, model: str, label: str, fmt) -> str:
    rows = frame[frame.model == model] if not frame.empty else frame
    return "  ".join(f"{r[label]} {fmt(r)}" for _, r in rows.iterrows()) or "-"


def headline_rows(analysis, slo_p95_ms: float) -> list[dict[str, str]]:
    """Per model: async÷sync, HTTP÷gRPC, batching gain, and max req/s within the P95 SLO.

    Models are the batching ones (their ``_nobatch`` twins appear through the gain); the
    whole-mix rows are left to the report, where each run's mix is spelled out.
    """
    sync_async = _at_top_level(analysis.sync_async)
    grpc_http = _at_top_level(analysis.grpc_http)
    batching = _at_top_level(analysis.batching)
    limits = analysis.limits if analysis.limits is not None else pd.DataFrame()
    models = sorted({m for m in analysis.requests.model.astype(str)
                     if not m.endswith(NOBATCH_SUFFIX) and m != ALL_MODELS})
    rows = []
    for model in models:
        row = {"model": model}
        row["async÷sync req/s"] = _join(
            sync_async, model, "protocol", lambda r: _ratio(r, "throughput_ratio",
                                                            "throughput_verdict"))
        row["async P95 change"] = _join(
            sync_async, model, "protocol",
            lambda r: _ratio(r, "p95_ratio", "p95_verdict", as_change=True))
        row["HTTP÷gRPC req/s"] = _join(
            grpc_http, model, "mode", lambda r: _ratio(r, "throughput_ratio",
                                                       "throughput_verdict"))
        row["batching gain"] = _join(
            batching[batching["mode"] == "sync"] if not batching.empty else batching, model,
            "protocol", lambda r: _ratio(r, "throughput_gain", "throughput_verdict"))
        mine = limits[limits.model == model] if not limits.empty else limits
        best = mine.max_rps.max() if not mine.empty else float("nan")
        never_crossed = not mine.empty and (mine.status == "slo never crossed").any()
        row[f"max req/s, P95≤{slo_p95_ms:g}ms"] = (
            "-" if math.isnan(best) else f"{'≥' if never_crossed else ''}{best:.0f}")
        rows.append(row)
    return rows
