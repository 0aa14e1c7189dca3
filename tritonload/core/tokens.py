"""The one definition of a generation's numbers: TTFT, inter-token latency, tokens, goodput.

An LLM user's record (`tritonload.load.llm`) carries its time to first token (``ttft_us``),
the gaps between its tokens (``itl_us``) and its token counts. Over a steady window (the
window every view of a run uses, `tritonload.core.numbers`: a generation belongs to the window
its completion falls in), of the generations that succeeded:

* **TTFT** and **E2E** percentiles are numpy's linear interpolation over the exact µs values,
  one per generation; **time to second token** is each generation's first gap.
* **ITL** percentiles pool every gap of every generation, so a long answer weighs as many
  tokens as it has (GenAI-Perf pools them per request first; per-token pooling is what a
  streaming reader feels, token by token).
* **Output token throughput** counts every token received in the window (failed streams'
  tokens too: the server produced them) per second; **request throughput** counts successes.
* **Goodput** is the generations per second that met every objective given: their own TTFT
  within the TTFT limit and their own mean gap within the ITL limit (GenAI-Perf's rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tritonload.core import schema
from tritonload.core.numbers import Window, in_window, percentiles_us, run_window, throughput_rps
from tritonload.core.rundir import read_records, read_run_json, request_parts

#: What a generation record needs to be summarised.
TOKEN_COLUMNS = ("intended_start_ns", "latency_us", "ok", *schema.GENERATION_COLUMNS)


@dataclass(frozen=True)
class TokenNumbers:
    """A set of generations over a window: counts, token throughput and exact latencies."""

    generations: int
    ok: int
    duration_s: float
    tokens_out: int  # every token received in the window
    ttft_us: np.ndarray = field(repr=False, compare=False)  # per successful generation
    tt2t_us: np.ndarray = field(repr=False, compare=False)  # first gap, where there is one
    itl_us: np.ndarray = field(repr=False, compare=False)  # every gap, pooled
    mean_itl_us: np.ndarray = field(repr=False, compare=False)  # per generation (NaN: 1 token)
    e2e_us: np.ndarray = field(repr=False, compare=False)
    tokens_in_mean: float = math.nan
    tokens_out_mean: float = math.nan  # per successful generation

    @property
    def request_rps(self) -> float:
        """Successful generations per second."""
        return throughput_rps(self.ok, self.duration_s)

    @property
    def output_tokens_per_s(self) -> float:
        """Tokens received per second of window."""
        return throughput_rps(self.tokens_out, self.duration_s)

    def percentile_ms(self, metric: str, percentile: float) -> float:
        """``metric`` (``ttft``, ``tt2t``, ``itl``, ``e2e``) at ``percentile``, in ms."""
        values = getattr(self, f"{metric}_us")
        return float(percentiles_us(values, [percentile])[0]) / 1000.0

    def goodput_rps(self, ttft_ms: float | None = None, itl_ms: float | None = None) -> float:
        """Successful generations per second that met both limits (the ones given)."""
        good = np.ones(len(self.ttft_us), dtype=bool)
        if ttft_ms is not None:
            good &= self.ttft_us <= ttft_ms * 1000.0
        if itl_ms is not None:  # a one-token answer has no gap: nothing to miss
            good &= ~(self.mean_itl_us > itl_ms * 1000.0)
        return throughput_rps(int(good.sum()), self.duration_s)


def token_numbers(generations: pd.DataFrame, window: Window) -> TokenNumbers:
    """The numbers of generation records (`TOKEN_COLUMNS`) over a steady window."""
    steady = generations[in_window(generations["intended_start_ns"].to_numpy(),
                                   generations["latency_us"].to_numpy(), window)]
    return summarize_tokens(steady, window.duration_s)


def summarize_tokens(steady: pd.DataFrame, duration_s: float) -> TokenNumbers:
    """The numbers of generations already chosen (a window's, a group's)."""
    ok = steady["ok"].to_numpy(dtype=bool)
    good = steady[ok]
    gaps = [np.asarray(g, dtype=np.float64) if g is not None else np.empty(0)
            for g in good["itl_us"]]
    pooled = np.concatenate(gaps) if gaps else np.empty(0)
    first = np.array([g[0] for g in gaps if len(g)], dtype=np.float64)
    means = np.array([g.mean() if len(g) else math.nan for g in gaps], dtype=np.float64)
    tokens = steady["tokens_out"].fillna(0).to_numpy(dtype=np.int64)
    return TokenNumbers(
        generations=len(steady), ok=int(ok.sum()), duration_s=float(duration_s),
        tokens_out=int(tokens.sum()),
        ttft_us=good["ttft_us"].to_numpy(dtype=np.float64), tt2t_us=first, itl_us=pooled,
        mean_itl_us=means, e2e_us=good["latency_us"].to_numpy(dtype=np.float64),
        tokens_in_mean=float(good["tokens_in"].mean()) if len(good) else math.nan,
        tokens_out_mean=float(good["tokens_out"].mean()) if len(good) else math.nan)


def run_tokens(run_dir: str | Path) -> TokenNumbers | None:
    """A run directory's generations over its steady window; None when it has none."""
    parts = request_parts(run_dir)
    if not parts or "tokens_out" not in pq_names(parts[0]):
        return None
    meta = read_run_json(run_dir)
    records = read_records(run_dir, list(TOKEN_COLUMNS))
    generations = records[records["tokens_out"].notna()]
    if generations.empty:
        return None
    return token_numbers(generations, run_window(meta, records))


def pq_names(path: Path) -> list[str]:
    """The column names of a Parquet file."""
    import pyarrow.parquet as pq

    return pq.read_schema(path).names
