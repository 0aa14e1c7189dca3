"""benchmarks/reproducibility.py: pairing two runs' headline comparisons (pure, no servers)."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reproducibility.py"


@pytest.fixture(scope="module")
def repro():
    spec = importlib.util.spec_from_file_location("reproducibility_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _answer() -> dict:
    return {
        "models": [{
            "model": "recommender", "protocol": "grpc",
            "capacity": {"status": "found", "capacity_rps": 1000.0, "capacity_lo_rps": 950.0,
                         "capacity_hi_rps": 1040.0},
            "batching_off": None,
            "batching_gain": {"ratio": 1.3, "lo": 1.1, "hi": 1.5, "verdict": "improvement"},
            "recommended": {"status": "ok",
                            "config": {"max_queue_delay_us": 200, "preferred_batch_sizes": [8]},
                            "change": {"ratio": 1.05, "lo": 0.95, "hi": 1.16,
                                       "verdict": "not significant"}},
        }],
        "sync_async": [{
            "framing": "equal-users", "model": "(all models)", "protocol": "grpc",
            "in_flight_sync": 4.0,
            "throughput_ratio": 2.9, "throughput_lo": 2.6, "throughput_hi": 3.2,
            "throughput_verdict": "improvement",
            "p95_ratio": 3.4, "p95_lo": 3.0, "p95_hi": 3.9, "p95_verdict": "regression",
        }],
    }


def test_comparisons_cover_every_headline_with_stable_keys(repro):
    found = repro.comparisons(_answer())
    assert [c.key for c in found] == [
        "capacity recommender/grpc", "batching gain recommender/grpc",
        "recommended change recommender/grpc", "recommended config recommender/grpc",
        "sync/async throughput equal-users grpc @4", "sync/async p95 equal-users grpc @4"]
    capacity = found[0]
    assert (capacity.value, capacity.lo, capacity.hi, capacity.verdict) == (
        1000.0, 950.0, 1040.0, "found")
    assert found[3].kind == repro.CONFIG
    assert found[3].verdict == "delay 200 µs, preferred [8]"
    assert found[5].verdict == "regression"


def test_identical_runs_agree_everywhere(repro):
    result = repro.agreement(_answer(), _answer())
    assert (result.agree, result.agree_total) == (5, 5)  # the config is counted apart
    assert (result.configs_same, result.configs_close, result.configs_total) == (1, 1, 1)
    assert (result.inside, result.inside_total) == (5, 5)
    assert result.meets_target() and result.meets_bar()
    assert repro.share(result.agree, result.agree_total) == "5/5 (100%)"


def test_flipped_verdict_and_value_outside_the_interval(repro):
    two = _answer()
    two["models"][0]["capacity"].update(capacity_rps=1060.0, capacity_lo_rps=1010.0,
                                        capacity_hi_rps=1100.0)
    two["models"][0]["batching_gain"] = {"ratio": 1.2, "lo": 0.98, "hi": 1.4,
                                         "verdict": "not significant"}
    two["models"][0]["recommended"]["config"]["max_queue_delay_us"] = 300
    rows = {r.key: r for r in repro.agreement(_answer(), two).rows}
    cap = rows["capacity recommender/grpc"]
    assert cap.agree and cap.inside is False and cap.overlap is True
    gain = rows["batching gain recommender/grpc"]
    assert not gain.agree and gain.inside is True
    config = rows["recommended config recommender/grpc"]
    assert not config.agree and config.inside is None
    result = repro.agreement(_answer(), two)
    assert (result.agree, result.agree_total, result.inside, result.inside_total) == (4, 5, 4, 5)
    # 200 → 300 µs is beyond ±15%: not identical, not close; and not a verdict.
    assert (result.configs_same, result.configs_close, result.configs_total) == (0, 0, 1)
    assert not result.meets_target() and not result.meets_bar()


def test_a_comparison_missing_in_one_run_disagrees_and_is_listed(repro):
    two = copy.deepcopy(_answer())
    two["models"][0]["recommended"]["change"] = None
    extra = copy.deepcopy(two["sync_async"][0])
    extra["framing"] = "equal-in-flight"
    two["sync_async"].append(extra)
    result = repro.agreement(_answer(), two)
    missing = {(r.key, r.one is None) for r in result.missing}
    assert missing == {("recommended change recommender/grpc", False),
                       ("sync/async throughput equal-in-flight grpc @4", True),
                       ("sync/async p95 equal-in-flight grpc @4", True)}
    assert all(not r.agree and r.inside is False for r in result.missing)
    assert (result.agree, result.agree_total) == (4, 7)  # the identical config is apart
    assert (result.inside, result.inside_total) == (4, 7)


def test_open_ended_and_missing_intervals(repro):
    one, two = _answer(), _answer()
    # "at least 1000 req/s": no upper end, so any run-2 value above the lower end is inside
    one["models"][0]["capacity"].update(status="above range", capacity_hi_rps=None)
    two["models"][0]["capacity"].update(status="above range", capacity_rps=1800.0,
                                        capacity_lo_rps=1800.0, capacity_hi_rps=None)
    # a ratio without an interval cannot be tested: not counted either way
    one["models"][0]["batching_gain"].update(lo=None, hi=None)
    result = repro.agreement(one, two)
    rows = {r.key: r for r in result.rows}
    assert rows["capacity recommender/grpc"].inside is True
    assert rows["batching gain recommender/grpc"].inside is None
    assert (result.inside, result.inside_total) == (4, 4)
    assert repro.describe(rows["capacity recommender/grpc"].one) == (
        "1000 [950, inf) above range")
