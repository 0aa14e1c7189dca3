"""Repetitions of bench cells: pairing by round, between/within intervals, both sync/async
framings and the Little's-law columns (synthetic runs tagged like the bench tags them)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tritonload.analysis import batching, compare, metrics
from tritonload.analysis.load import load_runs

from tritonload.cli.bench import Matrix
from tritonload.core.numbers import t_quantile


def _metrics(paths, n_boot=400, seed=0):
    rs = load_runs(paths)
    w = metrics.steady_windows(rs.runs)
    return rs, metrics.request_metrics(rs.records, w, rs.runs, n_boot=n_boot, seed=seed)


def _set_users(run_dir, users, in_flight):
    """The synthetic writer keeps 4 in flight per async user; a bench cell may not."""
    path = run_dir / "run.json"
    meta = json.loads(path.read_text())
    meta.update(users=users, max_in_flight=in_flight)
    path.write_text(json.dumps(meta))


def _bench_runs(make_run, Model, matrix, rate, latency_us, duration_s=10.0):
    """One synthetic run per scheduled repetition, tagged as the bench tags it.

    ``rate(cell)`` and ``latency_us(cell)`` give each cell's traffic.
    """
    paths = []
    for cell in matrix.schedule():
        users, in_flight = cell.users_and_in_flight()
        suffix = "_nobatch" if cell.batching == "off" else ""
        run = make_run([Model(f"m{suffix}", rate_rps=rate(cell),
                              latency_median_us=latency_us(cell), latency_sigma=0.2)],
                       name=cell.name, run_id=cell.name, protocol=cell.protocol,
                       mode=cell.mode,
                       load_level=users * in_flight, duration_s=duration_s,
                       extra={"tags": cell.tags()})
        _set_users(run, users, in_flight)
        paths.append(run)
    return paths


# ---------------------------------------------------------------------------------------------
# The pure interval


def test_t_quantiles_are_exact_for_small_df():
    for df, t in [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622),
                  (30, 2.0423)]:
        assert t_quantile(0.975, df) == pytest.approx(t, abs=1e-4)
    assert t_quantile(0.025, 2) == pytest.approx(-4.3027, abs=1e-4)


def _boot(values, sd=0.005, n=1000, seed=0):
    """Tight replicates around each value (relative sd ``sd``)."""
    rng = np.random.default_rng(seed)
    return [v * (1 + sd * rng.standard_normal(n)) for v in values]


def test_one_round_is_the_bootstrap_ratio_of_before():
    a, b = _boot([100.0], seed=1), _boot([150.0], seed=2)
    r = compare.round_ratio_interval([100.0], [150.0], a, b)
    assert (r.ratio, r.lo, r.hi) == compare.ratio_interval(100.0, 150.0, a[0], b[0])
    assert (r.within_lo, r.within_hi) == (r.lo, r.hi)
    assert math.isnan(r.between_lo) and math.isnan(r.between_hi) and r.rounds == 1


def test_between_interval_is_student_t_over_round_log_ratios():
    ratios = [1.8, 2.0, 2.3]
    a = [100.0, 110.0, 90.0]
    b = [x * q for x, q in zip(a, ratios, strict=True)]
    r = compare.round_ratio_interval(a, b, _boot(a, seed=3), _boot(b, seed=4))
    logs = np.log(ratios)
    half = 4.302653 * logs.std(ddof=1) / math.sqrt(3)
    assert r.ratio == pytest.approx(math.exp(logs.mean()))
    assert r.between_lo == pytest.approx(math.exp(logs.mean() - half), rel=1e-5)
    assert r.between_hi == pytest.approx(math.exp(logs.mean() + half), rel=1e-5)
    assert r.round_ratios == pytest.approx(tuple(ratios))
    # The verdict's interval is the union of the two.
    assert r.lo == min(r.within_lo, r.between_lo) and r.hi == max(r.within_hi, r.between_hi)
    # The within interval is the bootstrap of the same geometric mean: narrow here.
    assert r.within_lo < r.ratio < r.within_hi and r.within_hi / r.within_lo < 1.02


def test_the_interval_widens_with_the_spread_between_rounds():
    a = [100.0, 100.0, 100.0]
    boot_a = _boot(a, seed=5)
    widths, verdicts = [], []
    for ratios in ([1.3, 1.3, 1.3], [1.25, 1.3, 1.36], [1.1, 1.3, 1.55], [0.9, 1.3, 1.9]):
        b = [100.0 * q for q in ratios]
        r = compare.round_ratio_interval(a, b, boot_a, _boot(b, seed=6))
        widths.append(r.hi / r.lo)
        verdicts.append(compare.verdict(r.lo, r.hi, higher_is_better=True))
    assert widths == sorted(widths) and widths[-1] > 2 * widths[0]
    # Identical rounds: the within-run bootstrap is the floor, the ratio is significant...
    assert verdicts[0] == compare.IMPROVEMENT
    # ...while rounds that disagree this much are not, whatever each run's own interval says.
    assert verdicts[-1] == compare.NOT_SIGNIFICANT


def test_rounds_stand_in_when_runs_have_no_replicates():
    empty = [np.empty(0)] * 3
    r = compare.round_ratio_interval([1.0, 1.0, 1.0], [2.0, 2.1, 1.9], empty, empty)
    assert math.isnan(r.within_lo)
    assert (r.lo, r.hi) == (r.between_lo, r.between_hi) and r.lo < 2 < r.hi


# ---------------------------------------------------------------------------------------------
# Runs tagged with cell and rep


def _round_runs(make_run, Model, ratios):
    """Sync and async cells at equal users (4 × 1 vs 4 × 4), one round per ratio."""
    paths = []
    for rep, ratio in enumerate(ratios, 1):
        for mode, level, rate in (("sync", 4, 100.0), ("async", 16, 100.0 * ratio)):
            paths.append(make_run(
                [Model("m", rate_rps=rate, latency_median_us=5000)], mode=mode,
                load_level=level, duration_s=20, name=f"{mode}-rep{rep}",
                run_id=f"{mode}-rep{rep}",
                extra={"tags": {"cell": f"grpc-{mode}-on-c{level}", "rep": str(rep)}}))
    return paths


def test_repetitions_are_paired_by_round_and_collapsed(make_run, Model):
    tight = compare.sync_vs_async(_metrics(_round_runs(make_run, Model, [2, 2, 2]))[1])
    spread = compare.sync_vs_async(_metrics(_round_runs(make_run, Model, [1.4, 2, 2.8]))[1])
    for table in (tight, spread):
        assert len(table) == 1  # one pair of cells, not 3 × 3 pairs of runs
        row = table.iloc[0]
        assert row["framing"] == compare.EQUAL_USERS and row["rounds"] == 3
        assert (row["cell_a"], row["cell_b"]) == ("grpc-sync-on-c4", "grpc-async-on-c16")
        assert row["run_a"].count(",") == 2
    assert tight.iloc[0]["throughput_round_ratios"] == pytest.approx([2, 2, 2], rel=0.08)
    assert spread.iloc[0]["throughput_round_ratios"] == pytest.approx([1.4, 2, 2.8], rel=0.08)
    t, s = tight.iloc[0], spread.iloc[0]
    assert t["throughput_ratio"] == pytest.approx(2, rel=0.05)
    assert s["throughput_ratio"] == pytest.approx(2, rel=0.08)  # the geometric mean
    width = {k: r["throughput_ratio_between_hi"] / r["throughput_ratio_between_lo"]
             for k, r in (("tight", t), ("spread", s))}
    assert width["spread"] > 3 * width["tight"]
    assert t["throughput_verdict"] == compare.IMPROVEMENT
    assert s["throughput_verdict"] == compare.NOT_SIGNIFICANT
    # Within-run intervals alone would call the spread case significant.
    assert s["throughput_ratio_within_lo"] > 1


def test_one_repetition_is_the_old_comparison(make_run, Model):
    paths = _round_runs(make_run, Model, [2.0])
    _, m = _metrics(paths)
    row = compare.sync_vs_async(m).iloc[0]
    sync, asy = (m[m["mode"] == mode].iloc[0] for mode in ("sync", "async"))
    expected = compare.ratio_interval(sync.throughput_rps, asy.throughput_rps,
                                      sync.boot_throughput, asy.boot_throughput)
    assert (row["throughput_ratio"], row["throughput_ratio_lo"],
            row["throughput_ratio_hi"]) == expected
    assert row["rounds"] == 1 and math.isnan(row["throughput_ratio_between_lo"])
    assert row["run_a"] == sync.run_id and row["run_b"] == asy.run_id


def test_untagged_runs_are_one_round_each(make_run, Model):
    a = make_run([Model("m", rate_rps=100)], mode="sync", load_level=4)
    b = make_run([Model("m", rate_rps=100)], mode="sync", load_level=4)
    c = make_run([Model("m", rate_rps=300)], mode="async", load_level=4)
    table = compare.sync_vs_async(_metrics([a, b, c])[1])
    # Two sync runs, one async run at equal in flight: two pairs, as before repetitions.
    assert list(table["framing"]) == [compare.EQUAL_IN_FLIGHT] * 2
    assert set(table["rounds"]) == {1}


# ---------------------------------------------------------------------------------------------
# The bench's matrix, both framings, Little's law


def test_demo_matrix_pairs_both_framings(make_run, Model):
    matrix = Matrix(levels=(4,), protocols=("grpc",), batching=("on",), repetitions=3,
                    mix="recommender:1")
    rates = {"grpc-sync-on-c4": 400.0, "grpc-async-on-c4": 420.0, "grpc-async-on-u4x8": 1000.0}
    latency = {"grpc-sync-on-c4": 10_000.0, "grpc-async-on-c4": 9_500.0,
               "grpc-async-on-u4x8": 32_000.0}
    paths = _bench_runs(make_run, Model, matrix, lambda c: rates[c.cell_name],
                        lambda c: latency[c.cell_name])
    rs, m = _metrics(paths)
    assert sorted(rs.runs["cell"].unique()) == sorted(rates)
    assert sorted(rs.runs["rep"]) == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    table = compare.sync_vs_async(m)
    assert list(table["framing"]) == [compare.EQUAL_IN_FLIGHT, compare.EQUAL_USERS]
    a, b = table.iloc[0], table.iloc[1]
    assert (a["cell_a"], a["cell_b"]) == ("grpc-sync-on-c4", "grpc-async-on-c4")
    assert (b["cell_a"], b["cell_b"]) == ("grpc-sync-on-c4", "grpc-async-on-u4x8")
    assert set(table["rounds"]) == {3}
    # Every round pairs runs of the same round.
    for row in (a, b):
        reps = [r.rsplit("-rep", 1)[1] for r in (*row["run_a"].split(","),
                                                 *row["run_b"].split(","))]
        assert reps == ["1", "2", "3"] * 2
    # Equal in flight: 4 users × 1 vs 1 user × 4. Equal users: 4 × 1 vs 4 × 8.
    assert (a["users_a"], a["users_b"], a["in_flight_a"], a["in_flight_b"]) == (4, 1, 4, 4)
    assert (b["users_a"], b["users_b"], b["in_flight_a"], b["in_flight_b"]) == (4, 4, 4, 32)
    assert a["in_flight_multiple"] == 1 and b["in_flight_multiple"] == 8
    assert a["throughput_ratio"] == pytest.approx(420 / 400, rel=0.06)
    assert b["throughput_ratio"] == pytest.approx(2.5, rel=0.06)
    # Little's law: throughput = in flight ÷ mean latency; async ÷ sync = k × (sync latency ÷
    # async latency). Latency rose 3.2× with 8× in flight: partly saturated, 2.5× predicted.
    lognormal_mean = math.exp(0.2 ** 2 / 2)
    assert b["mean_latency_a_us"] == pytest.approx(10_000 * lognormal_mean, rel=0.03)
    assert b["latency_ratio"] == pytest.approx(3.2, rel=0.05)
    assert b["predicted_ratio"] == pytest.approx(8 / b["latency_ratio"])
    assert b["predicted_ratio"] == pytest.approx(2.5, rel=0.05)
    assert b["predicted_throughput_a"] == pytest.approx(4 / (10e-3 * lognormal_mean), rel=0.03)
    assert b["predicted_throughput_b"] == pytest.approx(32 / (32e-3 * lognormal_mean), rel=0.05)
    assert b["regime"] == "partly saturated" and a["regime"] == ""
    claim = compare.async_claim_check(table)
    assert claim["framing"] == compare.EQUAL_USERS
    assert [p["framing"] for p in claim["pairs"]] == [compare.EQUAL_IN_FLIGHT,
                                                      compare.EQUAL_USERS]
    assert claim["verdict"] == "not confirmed"  # P95 rose (and 2.5× < 3×)
    assert claim["does_not_hold"] == ["grpc m: 4 users × 1 vs 4 × 8 in flight"]


@pytest.mark.parametrize("latency_rise, regime, throughput_parts", [
    (1.1, "spare capacity", {"exceeded"}),
    (2.83, "partly saturated", {"inconclusive", "not confirmed"}),
    (8.0, "saturated", {"not confirmed"})])
def test_littles_law_regimes(make_run, Model, latency_rise, regime, throughput_parts):
    """8× the requests in flight: ≈ 8× the throughput when latency holds, ≈ 1× when the
    server is saturated and latency takes all of it."""
    matrix = Matrix(levels=(2,), protocols=("grpc",), batching=("on",), repetitions=3,
                    framings=("equal-users",), mix="recommender:1")
    ratio = 8 / latency_rise
    paths = _bench_runs(make_run, Model, matrix,
                        lambda c: 200.0 * (ratio if c.mode == "async" else 1),
                        lambda c: 10_000.0 * (latency_rise if c.mode == "async" else 1))
    table = compare.sync_vs_async(_metrics(paths)[1])
    assert list(table["framing"]) == [compare.EQUAL_USERS]
    row = table.iloc[0]
    assert row["regime"] == regime
    assert row["predicted_ratio"] == pytest.approx(ratio, rel=0.05)
    assert row["throughput_ratio"] == pytest.approx(ratio, rel=0.08)
    pair = compare.async_claim_check(table)["pairs"][0]
    assert pair["throughput_part"] in throughput_parts
    # With k× in flight per user, latency cannot drop 40%: the P95 part never holds here.
    assert pair["p95_part"] == "not confirmed" and pair["verdict"] == "not confirmed"


def test_predicted_throughput_only_for_groups_that_carry_the_whole_run(make_run, Model):
    paths = []
    for mode, level in (("sync", 4), ("async", 16)):
        paths.append(make_run([Model("x", rate_rps=100), Model("y", rate_rps=50)], mode=mode,
                              load_level=level))
    table = compare.sync_vs_async(_metrics(paths)[1]).set_index("model")
    assert table.loc[metrics.ALL_MODELS, "predicted_throughput_a"] > 0
    assert math.isnan(table.loc["x", "predicted_throughput_a"])
    assert table.loc["x", "predicted_ratio"] > 0  # the ratio needs no share of in flight


def test_grpc_vs_http_collapses_repetitions(make_run, Model):
    matrix = Matrix(levels=(4,), protocols=("grpc", "http"), modes=("sync",),
                    batching=("on",), repetitions=2, mix="recommender:1")
    paths = _bench_runs(make_run, Model, matrix,
                        lambda c: 100.0 if c.protocol == "grpc" else 80.0, lambda c: 5000.0)
    table = compare.grpc_vs_http(_metrics(paths)[1])
    assert len(table) == 1
    row = table.iloc[0]
    assert row["rounds"] == 2 and (row["cell_a"], row["cell_b"]) == (
        "grpc-sync-on-c4", "http-sync-on-c4")
    assert row["throughput_ratio"] == pytest.approx(0.8, rel=0.08)
    assert not math.isnan(row["throughput_ratio_between_lo"])


def test_batching_pairs_within_rounds(make_run, Model):
    """Batching on/off pairs never cross rounds (3 per-round rows, not 3 × 3)."""
    matrix = Matrix(levels=(4,), protocols=("grpc",), modes=("sync",), batching=("on", "off"),
                    repetitions=3, mix="recommender:1")
    paths = _bench_runs(make_run, Model, matrix,
                        lambda c: 200.0 if c.batching == "on" else 100.0, lambda c: 5000.0)
    rs, m = _metrics(paths)
    w = metrics.steady_windows(rs.runs)
    out = batching.batching_comparison(m, metrics.server_metrics(rs.server_stats, w))
    assert len(out) == 3
    assert [r.rsplit("-rep", 1)[1] for r in out["run_on"]] == sorted(
        r.rsplit("-rep", 1)[1] for r in out["run_off"])
