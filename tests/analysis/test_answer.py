"""The answer the report opens with (analysis/answer.py), on small hand-made tables.

No server and no run directory: knee tables are written out row by row (the columns
`analysis.capacity.knee_table` gives), recommendations as `tritonload.cli.recommendations`
writes them, sync-vs-async pairs with the columns `analysis.compare.sync_vs_async` gives.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from tritonload.analysis import answer as ans
from tritonload.analysis.capacity import KNEE_COLUMNS, replicas_needed
from tritonload.analysis.compare import IMPROVEMENT, NOT_SIGNIFICANT, REGRESSION
from tritonload.analysis.metrics import ALL_MODELS

NAN = math.nan


def knee(model: str, cap: float, lo: float, hi: float, *, batching: str = "on",
         config: str = "current", protocol: str = "grpc", status: str = "found",
         p95_us: float = 41_000.0, goodput: float = 0.97, at_rps: float | None = None,
         probes: int = 6) -> dict:
    """One row of a knee table (one search.json)."""
    name = model + ("_nobatch" if batching == "off" else "")
    suffix = "" if config == "current" else f"-{config}"
    return {"label": f"{name}-{protocol}{suffix}", "model": name, "base_model": model,
            "protocol": protocol, "batching": batching, "config": config, "objective": "P95",
            "status": status,
            "capacity_rps": cap, "capacity_lo_rps": lo, "capacity_hi_rps": hi,
            "p95_us": p95_us, "goodput": goodput,
            "at_rps": cap * 0.95 if at_rps is None else at_rps, "probes": probes,
            "slo_p95_us": 50_000.0, "explanation": f"{name}: {cap} req/s"}


def table(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=KNEE_COLUMNS)


def recommendation(model: str = "dense", protocol: str = "grpc", checked: bool = True,
                   status: str = "ok") -> dict:
    """A recommendations.json row."""
    return {"model": model, "protocol": protocol, "search": f"{model}-{protocol}",
            "status": status,
            "current": {"max_queue_delay_us": 1000, "preferred_batch_sizes": []},
            "recommended": {"max_queue_delay_us": 400, "preferred_batch_sizes": [16]},
            "predicted_capacity_rps": 1250.0, "reasoning": "batches of 16 fit the SLO",
            "pbtxt": "dynamic_batching { preferred_batch_size: [16] }",
            "cost_fit": "2000 + 800 × batch µs", "formation": [], "before": {},
            "after": {} if checked else None, "checked": checked}


ON = knee("dense", 1000.0, 900.0, 1100.0)
OFF = knee("dense", 400.0, 380.0, 440.0, batching="off")
CHECKED = knee("dense", 1300.0, 1200.0, 1400.0, config="recommended")


def test_capacity_batching_off_gain_check_and_replicas():
    [row] = ans.capacity_answers(table(ON, OFF, CHECKED), [recommendation()], 5000.0, 0.25)
    assert (row["model"], row["protocol"]) == ("dense", "grpc")
    assert row["capacity"] == {
        "label": "dense-grpc", "status": "found", "capacity_rps": 1000.0,
        "capacity_lo_rps": 900.0, "capacity_hi_rps": 1100.0, "p95_ms": 41.0,
        "goodput": 0.97, "at_rps": 950.0, "probes": 6, "explanation": "dense: 1000.0 req/s"}
    assert row["batching_off"]["label"] == "dense_nobatch-grpc"
    assert row["batching_off"]["capacity_rps"] == 400.0
    # on ÷ off, the interval from the ends of both intervals (the conservative extremes).
    gain = row["batching_gain"]
    assert gain["ratio"] == pytest.approx(2.5)
    assert gain["lo"] == pytest.approx(900 / 440) and gain["hi"] == pytest.approx(1100 / 380)
    assert gain["verdict"] == IMPROVEMENT

    rec = row["recommended"]
    assert rec["checked"] is True and rec["status"] == "ok"
    assert rec["config"] == {"max_queue_delay_us": 400, "preferred_batch_sizes": [16]}
    assert rec["current"]["max_queue_delay_us"] == 1000
    assert rec["predicted_capacity_rps"] == 1250.0
    assert rec["capacity"]["label"] == "dense-grpc-recommended"
    assert rec["capacity"]["capacity_rps"] == 1300.0
    change = rec["change"]  # checked ÷ current
    assert change["ratio"] == pytest.approx(1.3)
    assert change["lo"] == pytest.approx(1200 / 1100) and change["hi"] == pytest.approx(1400 / 900)
    assert change["verdict"] == IMPROVEMENT

    # Replicas from the better config, the checked one: ceil(5000 / (1300 × 0.75)) = 6.
    rep = row["replicas"]
    assert rep["replicas"] == 6 == math.ceil(5000 / (1300 * 0.75))
    assert rep["config"] == "recommended" and rep["target_rps"] == 5000.0
    assert rep["arithmetic"] == replicas_needed(5000.0, 1300.0, 0.25).arithmetic
    assert rep["arithmetic"] == ("ceil(5000 / (1300.0 × (1 − 0.25))) = ceil(5000 / 975.0) = "
                                 "ceil(5.128) = 6")


def test_replicas_come_from_the_current_config_when_the_check_did_worse():
    worse = knee("dense", 800.0, 700.0, 850.0, config="recommended")
    [row] = ans.capacity_answers(table(ON, OFF, worse), [recommendation()], 5000.0, 0.25)
    assert row["replicas"]["config"] == "current"
    assert row["replicas"]["replicas"] == 7  # ceil(5000 / 750) = ceil(6.667)
    assert row["replicas"]["arithmetic"].endswith("= ceil(6.667) = 7")
    change = row["recommended"]["change"]
    assert change["hi"] == pytest.approx(850 / 900) and change["verdict"] == REGRESSION


def test_an_exact_replica_count_is_not_rounded_up():
    [row] = ans.capacity_answers(table(ON), [], 3000.0, 0.25)  # 3000 / 750 = 4 exactly
    assert row["replicas"]["replicas"] == 4
    assert row["replicas"]["arithmetic"].endswith("= ceil(4.000) = 4")


def test_a_gain_whose_interval_contains_1_is_not_significant():
    close = knee("dense", 950.0, 850.0, 1050.0, batching="off")
    [row] = ans.capacity_answers(table(ON, close), [], None, 0.25)
    gain = row["batching_gain"]
    assert gain["lo"] < 1 < gain["hi"] and gain["verdict"] == NOT_SIGNIFICANT
    assert row["recommended"] is None and row["replicas"] is None  # no target, no check


def test_a_lower_bound_gives_a_ratio_without_interval():
    """Batching off never crossed the SLO (≥ 400 req/s): the ratio has no interval."""
    above = knee("dense", 400.0, 400.0, NAN, batching="off", status="above range")
    [row] = ans.capacity_answers(table(ON, above), [], None, 0.25)
    assert row["batching_off"]["capacity_hi_rps"] is None  # NaN becomes None, JSON-ready
    gain = row["batching_gain"]
    assert gain["ratio"] == pytest.approx(2.5)
    assert gain["lo"] is None and gain["hi"] is None and gain["verdict"] == NOT_SIGNIFICANT


def test_no_capacity_means_no_gain_and_no_replicas():
    below = knee("dense", NAN, NAN, NAN, status="below range", p95_us=NAN, goodput=NAN,
                 at_rps=NAN, probes=3)
    [row] = ans.capacity_answers(table(below, OFF), [], 5000.0, 0.25)
    assert row["capacity"]["status"] == "below range"
    assert row["capacity"]["capacity_rps"] is None and row["capacity"]["p95_ms"] is None
    assert row["batching_gain"] is None and row["replicas"] is None
    assert row["batching_off"]["capacity_rps"] == 400.0


def test_an_unchecked_recommendation_has_no_capacity_after():
    [row] = ans.capacity_answers(table(ON, OFF), [recommendation(checked=False)], 5000.0, 0.25)
    rec = row["recommended"]
    assert rec["checked"] is False and rec["capacity"] is None and rec["change"] is None
    assert row["replicas"]["config"] == "current" and row["replicas"]["replicas"] == 7


def test_one_answer_per_model_and_protocol_in_order():
    knees = table(knee("image", 200.0, 180.0, 220.0, protocol="http"),
                  knee("image", 210.0, 190.0, 230.0), ON,
                  knee("dense", 900.0, 850.0, 950.0, protocol="http"))
    rows = ans.capacity_answers(knees, [recommendation("dense", "http", checked=False)],
                                None, 0.25)
    assert [(r["model"], r["protocol"]) for r in rows] == [
        ("dense", "grpc"), ("dense", "http"), ("image", "grpc"), ("image", "http")]
    assert [r["capacity"]["capacity_rps"] for r in rows] == [1000.0, 900.0, 210.0, 200.0]
    # A recommendation belongs to its model and protocol only.
    assert [r["recommended"] is not None for r in rows] == [False, True, False, False]
    assert all(r["batching_off"] is None and r["batching_gain"] is None for r in rows)


def test_no_search_no_answer():
    assert ans.capacity_answers(table(), [], 1000.0, 0.25) == []


# ---------------------------------------------------------------------------------------------
# Sync vs async


def pair(framing: str, run_a: str, run_b: str, model: str = ALL_MODELS, **over) -> dict:
    """A sync_vs_async row: sync 4 users × 1 against async 4 users × 8 (or 1 user × 4)."""
    users_b, in_b = (4, 32) if framing == "equal-users" else (1, 4)
    row = {"framing": framing, "model": model, "protocol": "grpc", "load_kind": "concurrency",
           "load_level": 4, "users_a": 4.0, "users_b": float(users_b), "in_flight_a": 4.0,
           "in_flight_b": float(in_b), "rounds": 2, "run_a": run_a, "run_b": run_b,
           "throughput_a": 400.0, "throughput_b": 1520.0, "throughput_ratio": 3.8,
           "throughput_ratio_lo": 3.5, "throughput_ratio_hi": 4.1,
           "throughput_verdict": IMPROVEMENT, "p95_a_us": 12_000.0, "p95_b_us": 22_800.0,
           "p95_ratio": 1.9, "p95_ratio_lo": 1.7, "p95_ratio_hi": 2.1,
           "p95_verdict": REGRESSION, "latency_ratio": 2.0, "predicted_ratio": 4.0,
           "regime": "partly saturated"}
    row.update(over)
    return row


RUNS = pd.DataFrame({"run_id": ["s1", "s2", "a1", "a2", "u1", "u2"],
                     "valid": [True, True, True, True, True, False],
                     "invalid_reasons": ["", "", "", "", "", "the load generator used 97% "
                                         "of a core (limit 90%)"]})


def test_a_pair_with_an_invalid_run_has_no_verdict():
    pairs = pd.DataFrame([pair("equal-in-flight", "s1,s2", "a1,a2"),
                          pair("equal-users", "s1,s2", "u1,u2")])
    rows = ans.sync_async_answers(pairs, RUNS)
    by = {r["framing"]: r for r in rows}
    assert [r["framing"] for r in rows] == ["equal-in-flight", "equal-users"]
    valid = by["equal-in-flight"]
    assert (valid["throughput_verdict"], valid["p95_verdict"]) == (IMPROVEMENT, REGRESSION)
    assert valid["invalid"] == []
    bad = by["equal-users"]
    assert bad["throughput_verdict"] == ans.INVALID == bad["p95_verdict"] == "invalid run"
    assert bad["invalid"] == ["u2: the load generator used 97% of a core (limit 90%)"]
    # The numbers stay (the tables further down show them); only the verdict is withheld.
    assert bad["throughput_ratio"] == 3.8 and bad["p95_sync_ms"] == 12.0
    assert (bad["sync"], bad["async"]) == ("4 users × 1", "4 users × 8 in flight")


def test_the_whole_mix_rows_stand_for_the_pair_and_runs_without_validity_pass():
    pairs = pd.DataFrame([pair("equal-users", "s1", "u2", model="dense"),
                          pair("equal-users", "s1", "u2")])
    [row] = ans.sync_async_answers(pairs, RUNS.drop(columns=["valid"]))
    assert row["model"] == ALL_MODELS and row["invalid"] == []
    assert row["throughput_verdict"] == IMPROVEMENT
    [own] = ans.sync_async_answers(pairs.iloc[:1], RUNS)  # a model's own rows otherwise
    assert own["model"] == "dense" and own["throughput_verdict"] == ans.INVALID
    assert ans.sync_async_answers(pd.DataFrame(), RUNS) == []


def test_littles_law_text_writes_the_prediction_beside_the_measurement():
    rows = ans.sync_async_answers(pd.DataFrame([pair("equal-in-flight", "s1", "a1"),
                                                pair("equal-users", "s1", "u1")]), RUNS)
    [line] = ans.littles_law_text(rows)  # equal-in-flight pairs are k = 1 by construction
    assert line.startswith("grpc: 4 users × 1 → 4 users × 8 in flight puts 8× the requests "
                           "in flight.")
    assert "predicts 8 ÷ 2.00 (the latency ratio) = 4.00×" in line
    assert "measured 3.80× [3.50, 4.10], P95 1.90×." in line
    assert "Regime: partly saturated:" in line


def test_littles_law_text_without_a_latency_ratio_or_a_throughput_ratio():
    rows = ans.sync_async_answers(pd.DataFrame([
        pair("equal-users", "s1", "u1", latency_ratio=NAN, predicted_ratio=NAN, regime=""),
        pair("equal-users", "s1", "u1", protocol="http", throughput_ratio=NAN)]), RUNS)
    assert ans.littles_law_text(rows) == [
        "grpc: 4 users × 1 → 4 users × 8 in flight: measured 3.80×."]
