"""LLM and classic traffic in one run: a classic model's latency against generations in flight.

A run that mixes LLM users with classic ones (``locustfiles/llm.py``) shares one server
between token streams and ordinary requests. For each classic request in the steady window,
the generations in flight when it was sent are counted (from the generations' own send and
completion times), and the classic requests are split at the median of that count: P50 and
P95 with fewer generations in flight against more, and the ratio of the P95s. A ratio near 1
says the classic model does not feel the LLM traffic; well above 1, it does. A split needs
both halves: a run whose count hardly varies (closed-loop LLM users, always about one
generation each in flight) has no row, since nothing in it can show a difference; compare
it with a run without the LLM users instead (`tritonload compare`). Open-loop LLM users
(``--mode open``) give the count the spread a split needs.

Pure: the report draws and writes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tritonload.core.numbers import percentiles_us

#: Columns of :func:`interference_table`, in order.
INTERFERENCE_COLUMNS = [
    "run_id", "model", "protocol", "split_at", "requests_low", "requests_high",
    "p50_low_ms", "p50_high_ms", "p95_low_ms", "p95_high_ms", "p95_ratio",
]
#: Classic requests each half needs for its P95 to be worth a row.
MIN_PER_HALF = 20


def generations_in_flight(at_ns: np.ndarray, starts_ns: np.ndarray,
                          ends_ns: np.ndarray) -> np.ndarray:
    """How many of the generations ``[start, end)`` were in flight at each of ``at_ns``."""
    started = np.searchsorted(np.sort(starts_ns), at_ns, side="right")
    ended = np.searchsorted(np.sort(ends_ns), at_ns, side="right")
    return started - ended


def interference_table(records: pd.DataFrame, generations: pd.DataFrame,
                       windows: pd.DataFrame) -> pd.DataFrame:
    """Per run that mixes both kinds, per classic model and protocol: latency by LLM load."""
    if generations.empty or records.empty or windows.empty:
        return pd.DataFrame(columns=INTERFERENCE_COLUMNS)
    bounds = windows.set_index("run_id")
    rows = []
    for run_id, gens in generations.groupby(generations["run_id"].astype(str), sort=True):
        if run_id not in bounds.index:
            continue
        starts = gens["intended_start_ns"].to_numpy(np.int64)
        ends = starts + (gens["latency_us"].to_numpy(np.float64) * 1000).astype(np.int64)
        mine = records[(records["run_id"].astype(str) == run_id)
                       & ~records["model"].astype(str).isin(set(gens["model"].astype(str)))
                       & records["ok"].astype(bool)]
        sent = mine["intended_start_ns"].to_numpy(np.int64)
        done = sent + (mine["latency_us"].to_numpy(np.float64) * 1000).astype(np.int64)
        window = bounds.loc[run_id]
        mine = mine[(done >= window["window_start_ns"]) & (done < window["window_end_ns"])]
        for (model, protocol), group in mine.groupby(
                [mine["model"].astype(str), mine["protocol"].astype(str)], sort=True):
            row = _split(group, starts, ends)
            if row is not None:
                rows.append({"run_id": run_id, "model": model, "protocol": protocol, **row})
    return pd.DataFrame(rows, columns=INTERFERENCE_COLUMNS)


def _split(classic: pd.DataFrame, starts: np.ndarray, ends: np.ndarray) -> dict | None:
    """The classic requests split at the median of generations in flight at their send."""
    counts = generations_in_flight(classic["intended_start_ns"].to_numpy(np.int64), starts, ends)
    latency = classic["latency_us"].to_numpy(np.float64)
    split_at = float(np.median(counts))
    low, high = latency[counts <= split_at], latency[counts > split_at]
    if len(low) < MIN_PER_HALF or len(high) < MIN_PER_HALF:
        return None
    p_low, p_high = percentiles_us(low, [50, 95]) / 1000.0, percentiles_us(high, [50, 95]) / 1000.0
    return {"split_at": split_at, "requests_low": len(low), "requests_high": len(high),
            "p50_low_ms": float(p_low[0]), "p50_high_ms": float(p_high[0]),
            "p95_low_ms": float(p_low[1]), "p95_high_ms": float(p_high[1]),
            "p95_ratio": float(p_high[1] / p_low[1]) if p_low[1] > 0 else np.nan}
