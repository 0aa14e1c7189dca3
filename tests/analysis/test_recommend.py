"""Batching recommendation: the cost fit recovers a known cost model, the rule's arithmetic on
the demo fleet, the edge cases (no executions, one batch size, an SLO no batch can meet), and
the per-load-level batch formation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from tritonload.analysis import recommend as rec
from tritonload.analysis.synthetic import SyntheticModel, write_synthetic_run

from tritonload.core.errors import UsageError
from tritonload.core.numbers import run_numbers

SLO = 50_000.0


def batches_from(base_us: float, per_item_us: float, executions: dict[int, int], *,
                 intervals: int = 3, jitter: float = 0.0, seed: int = 0,
                 model: str = "m") -> pd.DataFrame:
    """server_batches rows of a model whose executions cost base + per_item·b µs."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(intervals):
        for size, n in executions.items():
            n_i = n // intervals + (1 if i < n % intervals else 0)
            if not n_i:
                continue
            each = (base_us + per_item_us * size) * (1 + jitter * rng.standard_normal(n_i))
            rows.append({"t_start_ns": i * 10**9, "t_end_ns": (i + 1) * 10**9, "model": model,
                         "batch_size": size, "executions": n_i,
                         "compute_infer_ns": int(each.sum() * 1000)})
    return pd.DataFrame(rows, columns=["t_start_ns", "t_end_ns", "model", "batch_size",
                                       "executions", "compute_infer_ns"])


def stats_row(infer_ns: int, *, input_ns: int = 0, output_ns: int = 0, queue_ns: int = 0,
              requests: int = 100, executions: int = 10) -> dict:
    return {"t_start_ns": 0, "t_end_ns": 10**9, "model": "m", "success_count": requests,
            "fail_count": 0, "inference_count": requests, "execution_count": executions,
            "queue_ns": queue_ns, "compute_input_ns": input_ns, "compute_infer_ns": infer_ns,
            "compute_output_ns": output_ns, "queue_count": requests,
            "compute_input_count": requests, "compute_infer_count": requests,
            "compute_output_count": requests}


def fit_of(base: float, per_item: float, sizes=(1, 2, 4, 8, 16)) -> rec.CostFit:
    return rec.execution_cost(batches_from(base, per_item, {b: 50 for b in sizes}))


# -- the cost fit ------------------------------------------------------------------------------


def test_fit_recovers_a_known_cost_model_exactly():
    fit = rec.execution_cost(batches_from(4000, 1000, {1: 30, 3: 20, 4: 300, 8: 150, 16: 9}))
    assert fit.base_us == pytest.approx(4000, rel=1e-6)
    assert fit.per_item_us == pytest.approx(1000, rel=1e-6)
    assert fit.quality == rec.GOOD and fit.usable
    assert fit.r2 == pytest.approx(1.0) and fit.rms_rel_error < 1e-6
    assert fit.executions == 509 and fit.batch_sizes == (1, 3, 4, 8, 16)
    assert fit.cost_us(20) == pytest.approx(24_000)
    assert [p[0] for p in fit.observed] == [1, 3, 4, 8, 16]


def test_fit_with_noise_recovers_base_and_per_item():
    fit = rec.execution_cost(batches_from(2000, 800, {b: 200 for b in range(1, 33)},
                                          jitter=0.05, seed=3))
    assert fit.base_us == pytest.approx(2000, rel=0.05)
    assert fit.per_item_us == pytest.approx(800, rel=0.02)
    assert fit.quality == rec.GOOD and fit.r2 > 0.99


def test_fit_is_weighted_by_executions():
    # A batch size seen once, at twice the model's time, barely moves the fit.
    b = batches_from(4000, 1000, {4: 500, 8: 500})
    stray = pd.DataFrame([{"t_start_ns": 0, "t_end_ns": 10**9, "model": "m", "batch_size": 2,
                           "executions": 1, "compute_infer_ns": 12_000_000}])
    fit = rec.execution_cost(pd.concat([b, stray], ignore_index=True))
    assert fit.per_item_us == pytest.approx(1000, rel=0.01)
    assert fit.base_us == pytest.approx(4000, rel=0.02)
    assert 0 < fit.rms_rel_error < 0.05  # the fit says it is not perfect


def test_overhead_ratio_comes_from_the_server_stats():
    stats = pd.DataFrame([stats_row(1_000_000_000, input_ns=20_000_000, output_ns=30_000_000)])
    fit = rec.execution_cost(batches_from(4000, 1000, {1: 10, 8: 10}), stats)
    assert fit.overhead_ratio == pytest.approx(0.05)
    assert fit.cost_us(8) == pytest.approx(12_000 * 1.05)
    assert "× 1.050" in fit.describe()


def test_no_executions_is_a_result_not_an_exception():
    for empty in (batches_from(4000, 1000, {}),
                  batches_from(4000, 1000, {4: 3}).assign(executions=0)):
        fit = rec.execution_cost(empty)
        assert fit.quality == rec.NO_EXECUTIONS and not fit.usable
        r = rec.recommend(fit, slo_p95_us=SLO, instances=2, max_batch_size=32)
        assert r.status == rec.NO_DATA and not r.meets_slo
        assert r.preferred_batch_size is None and r.max_queue_delay_us is None
        assert math.isnan(r.predicted_capacity_rps)
        assert r.pbtxt == "" and r.set_options("m") == ()
        assert "No recommendation" in r.reasoning


def test_only_batch_size_one_assumes_no_gain_from_batching():
    fit = rec.execution_cost(batches_from(5000, 0, {1: 400}))
    assert fit.quality == rec.ONE_SIZE
    assert fit.base_us == 0 and fit.per_item_us == pytest.approx(5000)
    assert "cannot be told apart" in fit.note
    r = rec.recommend(fit, slo_p95_us=SLO, instances=2, max_batch_size=32)
    assert r.status == rec.OK
    assert (r.preferred_batch_size, r.max_queue_delay_us) == (1, 0)
    # 85% of 2 instances / 5 ms
    assert r.predicted_capacity_rps == pytest.approx(0.85 * 2 / 5000e-6)
    assert "no base cost" in r.reasoning


def test_negative_slope_is_refitted_as_a_constant():
    b = pd.concat([batches_from(6000, 0, {2: 100}), batches_from(5800, 0, {3: 100})])
    fit = rec.execution_cost(b)
    assert fit.per_item_us == 0 and fit.base_us == pytest.approx(5900)
    assert fit.quality == rec.POOR and "negative" in fit.note


# -- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "per_item", "max_batch", "instances", "b", "delay", "capacity"),
    [
        (4000, 1000, 32, 2, 22, 4000, 1438),  # text_classifier
        (2000, 800, 128, 2, 30, 2000, 1962),  # recommender
        (8000, 500, 64, 1, 24, 8000, 1020),  # image_classifier
    ],
)
def test_demo_fleet_worked_example(base, per_item, max_batch, instances, b, delay, capacity):
    fit = fit_of(base, per_item)
    r = rec.recommend(fit, slo_p95_us=SLO, instances=instances, max_batch_size=max_batch)
    assert r.status == rec.OK and r.meets_slo
    assert r.preferred_batch_size == b and r.max_queue_delay_us == delay
    assert r.predicted_capacity_rps == pytest.approx(capacity, abs=1)
    factor = 1 + 1 / instances
    # b is the largest size within the 40 ms budget.
    assert factor * fit.cost_us(b) <= 40_000 < factor * fit.cost_us(b + 1)
    assert r.ceiling_rps == pytest.approx(instances * b / fit.cost_us(b) * 1e6)
    assert f"preferred_batch_size: [ {b} ]" in r.pbtxt
    assert f"max_queue_delay_microseconds: {delay}" in r.pbtxt
    assert f"count: {instances}" in r.pbtxt
    assert f"= {capacity:,} req/s" in r.reasoning


def test_reasoning_spells_out_the_change_and_set_options():
    r = rec.recommend(fit_of(4000, 1000), slo_p95_us=SLO, instances=2, max_batch_size=32,
                      current_delay_us=5000, current_preferred=(4, 8, 16, 32))
    assert "delay 5000 µs, preferred [4, 8, 16, 32] → delay 4000 µs, preferred [22]" \
        in r.reasoning
    assert r.set_options("text_classifier") == (
        "text_classifier.max_queue_delay_us=4000", "text_classifier.preferred_batch_sizes=22")


def test_slo_tighter_than_one_execution_cannot_be_met():
    fit = fit_of(8000, 500)
    r = rec.recommend(fit, slo_p95_us=5_000, instances=1, max_batch_size=64)
    assert r.status == rec.CANNOT_MEET and not r.meets_slo
    assert r.predicted_capacity_rps == 0
    assert (r.preferred_batch_size, r.max_queue_delay_us) == (1, 0)
    assert "Cannot meet" in r.reasoning and "c(1) = 8,500 µs" in r.reasoning
    # Even a one-execution SLO that would fit c(1) alone fails the budget under load.
    r2 = rec.recommend(fit, slo_p95_us=12_000, instances=1, max_batch_size=64)
    assert r2.status == rec.CANNOT_MEET


def test_client_overhead_and_headroom_shrink_the_budget():
    fit = fit_of(4000, 1000)
    plain = rec.recommend(fit, slo_p95_us=SLO, instances=2, max_batch_size=32)
    slower = rec.recommend(fit, slo_p95_us=SLO, instances=2, max_batch_size=32,
                           client_overhead_us=10_000)
    assert slower.preferred_batch_size < plain.preferred_batch_size
    assert slower.predicted_capacity_rps < plain.predicted_capacity_rps
    assert "client overhead 10.0 ms" in slower.reasoning


def test_max_batch_size_limits_and_says_so():
    r = rec.recommend(fit_of(4000, 100), slo_p95_us=SLO, instances=2, max_batch_size=8)
    assert r.preferred_batch_size == 8
    assert "max_batch_size 8 limits the batch" in r.reasoning


def test_delay_is_capped_by_the_light_load_budget():
    # Large base: d + 2·c(1) must stay within the budget (40 − 2 × 15.1 = 9.8 ms).
    fit = fit_of(15_000, 100)
    r = rec.recommend(fit, slo_p95_us=SLO, instances=4, max_batch_size=64)
    assert r.status == rec.OK
    assert r.max_queue_delay_us + 2 * fit.cost_us(1) <= 40_000
    assert r.max_queue_delay_us == 9_800 and "capped" in r.reasoning


@pytest.mark.parametrize("slo", [10_000, 20_000, 50_000, 200_000, 5_000_000])
@pytest.mark.parametrize("max_batch", [1, 4, 32, 128])
def test_recommendation_is_always_a_valid_config(slo, max_batch):
    for instances in (1, 2, 3):
        r = rec.recommend(fit_of(2000, 800), slo_p95_us=slo, instances=instances,
                          max_batch_size=max_batch)
        assert r.status in (rec.OK, rec.CANNOT_MEET)
        assert 1 <= r.preferred_batch_size <= max_batch
        assert r.max_queue_delay_us >= 0 and r.max_queue_delay_us % rec.DELAY_STEP_US == 0


def test_arguments_no_model_can_have_are_usage_errors():
    fit = fit_of(4000, 1000)
    with pytest.raises(UsageError):
        rec.recommend(fit, slo_p95_us=0, instances=2, max_batch_size=32)
    with pytest.raises(UsageError):
        rec.recommend(fit, slo_p95_us=SLO, instances=0, max_batch_size=32)
    with pytest.raises(UsageError):
        rec.recommend(fit, slo_p95_us=SLO, instances=2, max_batch_size=32, headroom=1.0)


def test_real_looking_table_text_classifier_at_1000_rps():
    """server_batches of text_classifier, gRPC open loop at 1,000 req/s (whole run, summed)."""
    table = pd.DataFrame(
        [(1, 11, 58_282_414), (2, 26, 166_439_209), (3, 43, 315_640_654),
         (4, 550, 4_594_739_924), (5, 2, 18_569_499), (6, 2, 20_757_584),
         (7, 5, 57_425_187), (8, 275, 3_423_546_141), (12, 2, 32_771_623),
         (13, 3, 52_176_318), (14, 3, 55_958_300), (15, 3, 58_500_230),
         (16, 11, 226_608_812)],
        columns=["batch_size", "executions", "compute_infer_ns"],
    ).assign(model="text_classifier", t_start_ns=0, t_end_ns=5 * 10**9)
    stats = pd.DataFrame([stats_row(54_082_993_178, input_ns=354_801_056,
                                    output_ns=2_006_886_419, requests=4975, executions=936)])
    fit = rec.execution_cost(table, stats)
    assert fit.base_us == pytest.approx(4281, rel=0.01)
    assert fit.per_item_us == pytest.approx(1020, rel=0.01)
    assert fit.overhead_ratio == pytest.approx(0.0437, abs=0.001)
    assert fit.quality == rec.GOOD and fit.rms_rel_error < 0.02
    r = rec.recommend(fit, slo_p95_us=SLO, instances=2, max_batch_size=32,
                      current_delay_us=5000, current_preferred=(4, 8, 16, 32))
    assert r.status == rec.OK
    assert r.preferred_batch_size == 20 and r.max_queue_delay_us == 4500
    assert 1250 < r.predicted_capacity_rps < 1400


# -- batch formation ---------------------------------------------------------------------------


def test_batch_formation_is_per_load_level():
    low = rec.BatchProbe(400, 380, 14_000, batches_from(4000, 1000, {1: 14, 2: 27, 4: 30}),
                         pd.DataFrame([stats_row(10**9, queue_ns=290_000_000, requests=100)]))
    high = rec.BatchProbe(1600, 1576, 85_500, batches_from(4000, 1000, {16: 20, 32: 42}),
                          pd.DataFrame([stats_row(10**9, queue_ns=1_960_000_000,
                                                  requests=100)]))
    idle = rec.BatchProbe(10, 0, math.nan, batches_from(4000, 1000, {}), pd.DataFrame())
    out = rec.batch_formation([high, idle, low])
    assert list(out.columns) == rec.FORMATION_COLUMNS
    assert list(out["offered_rps"].drop_duplicates()) == [10, 400, 1600]
    shares = out.dropna(subset=["share"]).groupby("offered_rps")["share"].sum()
    assert shares.to_numpy() == pytest.approx([1.0, 1.0])
    lo = out[out.offered_rps == 400]
    assert list(lo["batch_size"]) == [1, 2, 4]
    assert lo["mean_batch"].iloc[0] == pytest.approx((14 + 54 + 120) / 71)
    assert lo["queue_us"].iloc[0] == pytest.approx(2900)
    assert lo["queue_share_of_p95"].iloc[0] == pytest.approx(2900 / 14_000)
    hi = out[out.offered_rps == 1600]
    assert hi["mean_batch"].iloc[0] == pytest.approx((16 * 20 + 32 * 42) / 62)
    empty = out[out.offered_rps == 10]
    assert len(empty) == 1 and pd.isna(empty["batch_size"].iloc[0])
    assert empty["executions_total"].iloc[0] == 0


def test_batch_probe_reads_one_model_over_the_steady_window(tmp_path):
    models = [SyntheticModel("a", rate_rps=300, batch_sizes={2: 1, 4: 1}),
              SyntheticModel("b", rate_rps=100)]
    run = write_synthetic_run(tmp_path / "run", models, load_kind="rate", load_level=400,
                              mode="open", duration_s=12, seed=1)
    p = rec.batch_probe(run, "a")
    assert p.offered_rps == 400
    assert set(p.batches["model"]) == {"a"} and set(p.stats["model"]) == {"a"}
    numbers = run_numbers(run, by=("model",))
    window = numbers.window
    mid = (p.stats["t_start_ns"] + p.stats["t_end_ns"]) / 2
    assert ((mid >= window.start_ns) & (mid < window.end_ns)).all()
    assert len(p.stats) < 12  # the warm-up interval is left out
    assert p.p95_us == pytest.approx(numbers.groups[("a",)].percentile_ms(95) * 1000)
    assert p.throughput_rps == pytest.approx(numbers.groups[("a",)].throughput_rps)
    assert set(p.batches["batch_size"]) == {2, 4}
    assert rec.batch_probe(run, "a", offered_rps=123).offered_rps == 123
