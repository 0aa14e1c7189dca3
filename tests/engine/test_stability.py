"""The bench's stability rule: stop when the last windows agree, give up at the bound."""

from __future__ import annotations

import math

import pytest

from tritonload.core.errors import UsageError
from tritonload.load.stability import StabilityRule


def _rule_after(history: list[tuple[float, float | None]], **settings) -> StabilityRule:
    rule = StabilityRule(**settings)
    for throughput, p95 in history:
        rule.add(throughput, p95)
    return rule


def test_stable_once_the_last_windows_agree_within_the_tolerance():
    rule = StabilityRule(windows=3, tolerance=0.10, max_windows=8)
    rule.add(500.0, 20.0)  # warm, far off: it is not among the last three for long
    rule.add(1000.0, 10.0)
    assert not rule.stable and not rule.done  # fewer windows than the rule needs
    rule.add(1050.0, 10.5)
    assert not rule.stable  # 500 is still among the last three
    rule.add(960.0, 9.6)
    assert rule.stable and rule.done
    assert len(rule.history) == 4


@pytest.mark.parametrize("history", [
    [(1000.0, 10.0), (1000.0, 10.0), (1250.0, 10.0)],  # throughput 1250 is 14% off the mean
    [(1000.0, 10.0), (1000.0, 10.0), (1000.0, 12.5)],  # P95 12.5 is 14% off the mean
])
def test_one_quantity_off_is_not_stable(history):
    rule = _rule_after(history, windows=3, tolerance=0.10)
    assert not rule.stable and not rule.done


def test_tolerance_is_relative_to_the_mean_of_the_last_windows():
    # Mean 100; 109 and 91 are within 10%, 111 is not.
    assert _rule_after([(109.0, 5.0), (91.0, 5.0), (100.0, 5.0)]).stable
    assert not _rule_after([(111.0, 5.0), (89.0, 5.0), (100.0, 5.0)]).stable
    assert _rule_after([(111.0, 5.0), (89.0, 5.0), (100.0, 5.0)], tolerance=0.12).stable


def test_gives_up_at_max_windows_and_stays_unstable():
    rule = StabilityRule(windows=2, tolerance=0.05, max_windows=4)
    for throughput in (100.0, 200.0, 100.0):
        rule.add(throughput, 10.0)
        assert not rule.done
    rule.add(200.0, 10.0)
    assert rule.done and not rule.stable
    summary = rule.summary()
    assert summary["stable"] is False
    assert [w["throughput_rps"] for w in summary["windows"]] == [100.0, 200.0, 100.0, 200.0]
    assert summary["rule"] == {"windows": 2, "tolerance": 0.05, "max_windows": 4}


def test_a_window_without_p95_is_never_stable():
    rule = _rule_after([(1000.0, 10.0), (1000.0, None), (1000.0, 10.0)])
    assert math.isnan(rule.history[1][1])
    assert not rule.stable
    rule.add(1000.0, float("nan"))
    assert not rule.stable
    assert _rule_after([(1000.0, 10.0)] * 3).stable  # the same windows, with a P95, are


def test_zero_throughput_is_never_stable():
    assert not _rule_after([(0.0, 10.0)] * 3).stable


def test_summary_rounds_for_run_json():
    summary = _rule_after([(123.4567, 9.87654)], windows=1, max_windows=1).summary()
    assert summary == {"stable": True, "windows": [{"throughput_rps": 123.46, "p95_ms": 9.877}],
                       "rule": {"windows": 1, "tolerance": 0.1, "max_windows": 1}}


@pytest.mark.parametrize("settings, fragment", [
    ({"windows": 0}, "1 <= windows <= max windows"),
    ({"windows": 5, "max_windows": 4}, "1 <= windows <= max windows"),
    ({"tolerance": 0.0}, "tolerance must be between 0 and 1"),
    ({"tolerance": 1.0}, "tolerance must be between 0 and 1"),
    ({"tolerance": -0.1}, "tolerance must be between 0 and 1"),
    ({"tolerance": float("nan")}, "tolerance must be between 0 and 1"),
])
def test_bad_parameters_are_usage_errors(settings, fragment):
    with pytest.raises(UsageError, match=fragment):
        StabilityRule(**settings)
