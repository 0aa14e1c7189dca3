"""Where an ensemble's time goes: each step's queue and compute, and the bottleneck.

Triton's statistics for an ensemble say little about its steps: its own queue is the
ensemble scheduler's (microseconds) and its compute is the steps' compute added up, with the
steps' queues left out. The steps' own statistics (``server_steps.parquet``, sampled beside
the ensemble's) hold the answer, which is what perf_analyzer prints as "Composing models".
Per step: mean queue and compute phases per request over the steady window, their sum, its
share of all steps, and the bottleneck (the step with the largest sum: where requests spend
the most time, waiting or computing).

A step model that the run also sent to directly (``image_classifier`` in the demo mix) has
statistics that count both kinds of request; ``shared`` marks it. Its means then describe
the model as the ensemble met it, contention included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import intervals_in_window

_PHASES = ("queue", "compute_input", "compute_infer", "compute_output")

#: Columns of :func:`step_breakdown`.
STEP_COLUMNS = ["run_id", "ensemble", "step", "model", "requests",
                *[f"{p}_us" for p in _PHASES], "step_us", "share", "bottleneck", "shared",
                "server_window"]


def step_breakdown(server_steps: pd.DataFrame, server_stats: pd.DataFrame,
                   windows: pd.DataFrame) -> pd.DataFrame:
    """Per run, ensemble and step: mean phase times per request (µs) and the bottleneck.

    Intervals count as in :func:`analysis.metrics.server_metrics` (midpoint in the steady
    window, else the whole run, said in ``server_window``). ``requests`` is the step's
    successes; ``share`` its ``step_us`` over the sum of the ensemble's steps;
    ``bottleneck`` is true for the largest; ``shared`` when the run's ``server_stats`` has
    the step model too (the run sent to it directly).
    """
    if server_steps.empty:
        return pd.DataFrame(columns=STEP_COLUMNS)
    sel, fallback = intervals_in_window(server_steps, windows)
    frame = sel.assign(run_id=sel["run_id"].astype(str), ensemble=sel["ensemble"].astype(str),
                       model=sel["model"].astype(str))
    sums = [c for c in frame.columns if c.endswith(("_count", "_ns"))
            and c not in ("t_start_ns", "t_end_ns")]
    out = frame.groupby(["run_id", "ensemble", "step", "model"])[sums].sum().reset_index()
    total = np.zeros(len(out))
    for phase in _PHASES:
        count = out[f"{phase}_count"].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(count > 0, out[f"{phase}_ns"].to_numpy(np.float64) / count / 1e3,
                            np.nan)
        out[f"{phase}_us"] = mean
        total = total + np.nan_to_num(mean)
    out["step_us"] = total
    out["requests"] = out["success_count"]
    per_ensemble = out.groupby(["run_id", "ensemble"])["step_us"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["share"] = out["step_us"] / per_ensemble.transform("sum")
    out["bottleneck"] = out["step_us"] == per_ensemble.transform("max")
    direct = set(zip(server_stats["run_id"].astype(str), server_stats["model"].astype(str),
                     strict=True)) if not server_stats.empty else set()
    out["shared"] = [(r, m) in direct for r, m in zip(out["run_id"], out["model"], strict=True)]
    out["server_window"] = np.where(out["run_id"].isin(fallback), "whole run", "steady window")
    return out[STEP_COLUMNS].sort_values(["run_id", "ensemble", "step"], ignore_index=True)
