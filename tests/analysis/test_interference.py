"""`analysis.interference`: classic latency split by the generations in flight at its send.

Synthetic records stand in for a mixed run here (the function is pure); the LLM scenario
itself runs against the real server in tests/engine/test_llm_users.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tritonload.analysis.interference import generations_in_flight, interference_table

S = 1_000_000_000


def test_in_flight_counts_starts_minus_ends():
    starts = np.array([0, 10, 20]) * S
    ends = np.array([15, 30, 25]) * S
    assert generations_in_flight(np.array([5, 12, 22, 27, 40]) * S, starts, ends).tolist() == [
        1, 2, 2, 1, 0]


def _mixed_run(slowdown_ms: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Generations busy in the run's second half; classic requests slower there by
    ``slowdown_ms``."""
    rng = np.random.default_rng(0)
    gen_starts = np.linspace(50, 95, 40) * S
    generations = pd.DataFrame({"run_id": "r1", "model": "text_generator",
                                "intended_start_ns": gen_starts.astype(np.int64),
                                "latency_us": np.full(40, 3e6)})
    sent = np.linspace(1, 99, 400) * S
    latency_ms = 5 + rng.exponential(1, 400) + np.where(sent > 50 * S, slowdown_ms, 0)
    classic = pd.DataFrame({"run_id": "r1", "model": "recommender", "protocol": "grpc",
                            "intended_start_ns": sent.astype(np.int64),
                            "latency_us": latency_ms * 1000, "ok": True})
    records = pd.concat([classic, generations.assign(protocol="grpc", ok=True)])
    windows = pd.DataFrame({"run_id": ["r1"], "window_start_ns": [0], "window_end_ns": [100 * S],
                            "duration_s": [100.0]})
    return records, generations, windows


def test_a_classic_model_slowed_by_generations_shows_a_p95_ratio_above_one():
    row = interference_table(*_mixed_run(10.0)).iloc[0]
    assert (row["model"], row["protocol"]) == ("recommender", "grpc")  # not the generator
    assert row["requests_low"] + row["requests_high"] == 400
    assert row["p95_high_ms"] > row["p95_low_ms"] + 8 and row["p95_ratio"] > 1.8


def test_no_slowdown_gives_a_ratio_near_one():
    row = interference_table(*_mixed_run(0.0)).iloc[0]
    assert 0.8 <= row["p95_ratio"] <= 1.25, row


def test_a_constant_count_has_no_row():
    records, generations, windows = _mixed_run(0.0)
    generations = generations.assign(intended_start_ns=0, latency_us=200e6)  # always all 40
    assert interference_table(records, generations, windows).empty
