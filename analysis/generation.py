"""Generations (the LLM users' token streams): TTFT, ITL, tokens per second, goodput per run.

One row per run and (model, protocol, mode), over the run's steady window, with the numbers
of `tritonload.core.tokens` (the same the ``run`` line and the TTFT/ITL gates use): a
generation belongs to the window its completion falls in. Pure: the report draws and writes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tritonload.core.tokens import summarize_tokens

#: Columns of :func:`generation_table`, in order.
GENERATION_TABLE_COLUMNS = [
    "model", "protocol", "mode", "load_kind", "load_level", "run_id", "generations", "ok",
    "error_rate", "tokens_in_mean", "tokens_out_mean", "ttft_p50_ms", "ttft_p95_ms",
    "ttft_p99_ms", "tt2t_p50_ms", "itl_p50_ms", "itl_p95_ms", "itl_p99_ms", "e2e_p50_ms",
    "e2e_p95_ms", "request_rps", "output_tokens_per_s", "goodput_rps",
]


def generation_table(generations: pd.DataFrame, windows: pd.DataFrame,
                     slo_ttft_ms: float | None = None,
                     slo_itl_ms: float | None = None) -> pd.DataFrame:
    """The generations' numbers per run and (model, protocol, mode).

    ``goodput_rps`` counts the generations that met ``slo_ttft_ms`` and ``slo_itl_ms`` (their
    own TTFT and mean gap); NaN when neither is given.
    """
    if generations.empty or windows.empty:
        return pd.DataFrame(columns=GENERATION_TABLE_COLUMNS)
    bounds = windows.set_index("run_id")
    run = generations["run_id"].astype(str)
    done = (generations["intended_start_ns"].to_numpy(np.int64)
            + (generations["latency_us"].to_numpy(np.float64) * 1000).astype(np.int64))
    start = run.map(bounds["window_start_ns"]).to_numpy(np.float64)
    end = run.map(bounds["window_end_ns"]).to_numpy(np.float64)
    steady = generations[(done >= start) & (done < end)]
    rows = []
    keys = ["model", "protocol", "mode", "load_kind", "load_level", "run_id"]
    for key, frame in steady.groupby(keys, sort=True):
        numbers = summarize_tokens(frame, float(bounds.loc[key[-1], "duration_s"]))
        p = numbers.percentile_ms
        goodput = (numbers.goodput_rps(slo_ttft_ms, slo_itl_ms)
                   if slo_ttft_ms is not None or slo_itl_ms is not None else np.nan)
        rows.append({
            **dict(zip(keys, key, strict=True)), "generations": numbers.generations,
            "ok": numbers.ok, "error_rate": 1 - numbers.ok / numbers.generations,
            "tokens_in_mean": numbers.tokens_in_mean, "tokens_out_mean": numbers.tokens_out_mean,
            "ttft_p50_ms": p("ttft", 50), "ttft_p95_ms": p("ttft", 95),
            "ttft_p99_ms": p("ttft", 99), "tt2t_p50_ms": p("tt2t", 50),
            "itl_p50_ms": p("itl", 50), "itl_p95_ms": p("itl", 95), "itl_p99_ms": p("itl", 99),
            "e2e_p50_ms": p("e2e", 50), "e2e_p95_ms": p("e2e", 95),
            "request_rps": numbers.request_rps,
            "output_tokens_per_s": numbers.output_tokens_per_s, "goodput_rps": goodput})
    return pd.DataFrame(rows, columns=GENERATION_TABLE_COLUMNS)
