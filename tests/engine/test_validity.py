"""Run validity (tritonload.core.validity): each rule, its threshold, and missing data."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from tritonload.analysis.load import load_runs
from tritonload.analysis.synthetic import SyntheticModel, write_synthetic_run

from tritonload.core import schema, validity
from tritonload.core.numbers import Numbers, Window
from tritonload.core.rundir import read_arrivals, write_arrivals
from tritonload.core.validity import (
    CLIENT_CPU_LIMIT,
    ERROR_RATE_LIMIT,
    LATE_OR_DROPPED_LIMIT,
    client_cpu_share,
    judge,
    run_validity,
)

S = 1_000_000_000
T0 = 1_700_000_000 * S
WINDOW = Window(T0 + 2 * S, T0 + 12 * S, 2.0, "warmup_s=2 from run.json", True)  # 10 s


def _numbers(requests: int = 1000, errors: int = 0) -> Numbers:
    return Numbers(requests, requests - errors, WINDOW.duration_s, np.empty(0))


def _cpu(share: float, start_s: int = 0, end_s: int = 14, warmup_share: float | None = None
         ) -> dict:
    """Samples once a second: ``share`` of a core, ``warmup_share`` before the window."""
    samples, cpu = [], 5.0  # CPU time spent before the test started (imports, pre-flight)
    for t in range(start_s, end_s + 1):
        samples.append([T0 + t * S, round(cpu, 6)])
        cpu += warmup_share if warmup_share is not None and t < 2 else share
    return {"samples": samples}


def _arrivals(late: int = 0, dropped: int = 0, scheduled: int = 1000, seconds=range(0, 14),
              **by_second: tuple[int, int]) -> list[dict]:
    """Per-second rows; ``s3=(late, dropped)`` overrides second 3."""
    rows = []
    for t in seconds:
        lt, dr = by_second.get(f"s{t}", (late, dropped))
        rows.append({"t_start_ns": T0 + t * S, "t_end_ns": T0 + (t + 1) * S,
                     "scheduled": scheduled, "late": lt, "dropped": dr})
    return rows


def test_a_clean_run_is_valid_and_carries_its_shares():
    meta = {"client_cpu": _cpu(0.5), "stability": {"stable": True, "windows": []}}
    v = judge(meta, WINDOW, _arrivals(late=3), _numbers(1000, 2))
    assert v.valid and v.reasons == ()
    assert v.client_cpu_share == pytest.approx(0.5)
    assert v.late_share == pytest.approx(0.003) and v.dropped_share == 0.0
    assert v.error_rate == pytest.approx(0.002)


def test_saturated_generator():
    v = judge({"client_cpu": _cpu(0.97)}, WINDOW, None, _numbers())
    assert not v.valid
    assert v.reasons == ("load generator saturated: client CPU 97% of a core (limit 90%)",)


def test_a_saturated_worker_spoils_a_distributed_run():
    meta = {"client_cpu": _cpu(0.05),  # the master only collects
            "workers": {"vm_a": {"state": "done", "client_cpu": _cpu(0.4)},
                        "vm_b": {"state": "done", "client_cpu": _cpu(0.95)},
                        "vm_c": {"state": "lost", "client_cpu": None}}}
    v = judge(meta, WINDOW, None, _numbers())
    assert v.client_cpu_share == pytest.approx(0.95)
    assert v.reasons == ("load generator saturated: worker vm_b CPU 95% of a core "
                         "(limit 90%)",)
    meta["workers"]["vm_b"]["client_cpu"] = _cpu(0.5)
    assert judge(meta, WINDOW, None, _numbers()).valid


def test_cpu_threshold_is_inclusive():
    assert CLIENT_CPU_LIMIT == 0.90
    assert not judge({"client_cpu": _cpu(0.90)}, WINDOW, None, _numbers()).valid
    assert judge({"client_cpu": _cpu(0.89)}, WINDOW, None, _numbers()).valid


def test_cpu_is_judged_over_the_steady_window_only():
    # A busy start-up (100% in the warm-up) does not count; the window itself is at 40%.
    meta = {"client_cpu": _cpu(0.4, warmup_share=1.0)}
    assert client_cpu_share(meta["client_cpu"], WINDOW) == pytest.approx(0.4)
    # Samples not on the window's bounds: the cumulative CPU time is interpolated.
    off_grid = {"samples": [[T0 + int(0.5 * S), 0.0], [T0 + int(12.5 * S), 12.0]]}
    assert client_cpu_share(off_grid, WINDOW) == pytest.approx(1.0)


def test_two_samples_at_start_and_stop_are_enough():
    whole = Window(T0, T0 + 3 * S, 0.0, "run too short to trim: whole run", False)
    samples = {"samples": [[T0 + S // 100, 1.0], [T0 + 3 * S - S // 100, 3.8]]}
    assert client_cpu_share(samples, whole) == pytest.approx(2.8 / 2.98)


@pytest.mark.parametrize("client_cpu", [
    None, {}, {"samples": []}, {"samples": [[T0, 1.0]]}, {"samples": [["x", "y"], [1]]},
    {"samples": "garbage"}, [1, 2, 3], {"samples": [[T0, 1.0], [T0 + 2 * S, float("nan")]]},
])
def test_runs_without_cpu_samples_are_not_judged_on_cpu(client_cpu):
    meta = {} if client_cpu is None else {"client_cpu": client_cpu}
    v = judge(meta, WINDOW, None, _numbers())
    assert v.valid and math.isnan(v.client_cpu_share)


def test_samples_covering_too_little_of_the_window_are_not_judged():
    # Samples only for the first 3 s of a 10 s window (a ticker starved of the loop).
    few = {"samples": [[T0 + t * S, 10.0 * t] for t in range(0, 6)]}
    assert math.isnan(client_cpu_share(few, WINDOW))
    empty = Window(T0, T0, 0.0, "no load period", False)
    assert math.isnan(client_cpu_share(_cpu(1.0), empty))


def test_open_loop_behind_schedule():
    v = judge({}, WINDOW, _arrivals(late=20, dropped=5), _numbers())
    assert not v.valid
    assert v.late_share == pytest.approx(0.02) and v.dropped_share == pytest.approx(0.005)
    assert v.reasons == ("open loop behind schedule: 2.0% of scheduled sends late and 0.5% "
                         "dropped (limit 1% together)",)


def test_late_and_dropped_count_together_above_1_percent():
    assert LATE_OR_DROPPED_LIMIT == 0.01
    assert judge({}, WINDOW, _arrivals(late=10), _numbers()).valid  # exactly 1%: not above
    assert not judge({}, WINDOW, _arrivals(late=6, dropped=6), _numbers()).valid  # 1.2%
    assert not judge({}, WINDOW, _arrivals(dropped=11), _numbers()).valid


def test_only_arrival_intervals_in_the_steady_window_count():
    # Seconds 0-1 (warm-up) and 12-13 (after the window) are badly late; the window is clean.
    rows = _arrivals(s0=(900, 100), s1=(900, 100), s12=(900, 100), s13=(900, 100))
    v = judge({}, WINDOW, rows, _numbers())
    assert v.valid and v.late_share == 0.0 and v.dropped_share == 0.0
    # An interval counts when its midpoint lies in the window: with the window starting at
    # 2.4 s, second 2 (midpoint 2.5 s) counts, second 1 (1.5 s) does not.
    shifted = Window(T0 + int(2.4 * S), T0 + int(12.4 * S), 2.4, "test", True)
    rows = _arrivals(s1=(900, 0), s2=(500, 0))
    assert validity.arrival_shares(rows, shifted) == (pytest.approx(0.05), 0.0)


@pytest.mark.parametrize("arrivals", [None, [], schema.ARRIVALS.empty_table().to_pandas(),
                                      pd.DataFrame(), _arrivals(scheduled=0)])
def test_closed_loop_runs_are_not_judged_on_arrivals(arrivals):
    v = judge({}, WINDOW, arrivals, _numbers())
    assert v.valid and math.isnan(v.late_share) and math.isnan(v.dropped_share)


def test_failed_requests():
    assert ERROR_RATE_LIMIT == 0.01
    v = judge({}, WINDOW, None, _numbers(1000, 25))
    assert v.reasons == ("failed requests: 2.5% of 1000 requests in the steady window "
                         "(limit 1%)",)
    assert judge({}, WINDOW, None, _numbers(1000, 10)).valid  # exactly 1%: not above
    empty = judge({}, WINDOW, None, _numbers(0))
    assert empty.valid and math.isnan(empty.error_rate)


def test_unstable_windows():
    stability = {"stable": False, "windows": [{"throughput_rps": 1, "p95_ms": 1}] * 8,
                 "rule": {"windows": 3, "tolerance": 0.1, "max_windows": 8}}
    v = judge({"stability": stability}, WINDOW, None, _numbers())
    assert v.reasons == ("unstable: the last 3 windows never agreed within ±10% "
                         "in 8 measured windows",)
    assert not judge({"stability": {"stable": False}}, WINDOW, None, _numbers()).valid
    for ok in (None, {"stable": True}, {}):
        assert judge({"stability": ok}, WINDOW, None, _numbers()).valid


def test_every_broken_rule_is_one_reason_in_order():
    meta = {"client_cpu": _cpu(1.0), "stability": {"stable": False}}
    v = judge(meta, WINDOW, _arrivals(dropped=500), _numbers(100, 50))
    assert [r.split(":")[0] for r in v.reasons] == [
        "load generator saturated", "open loop behind schedule", "failed requests", "unstable"]
    with pytest.raises(AttributeError):
        v.valid = True  # frozen


def _synthetic(tmp_path, name: str, error_rate: float = 0.0):
    run_dir = tmp_path / name
    write_synthetic_run(run_dir, [SyntheticModel("m", rate_rps=200, error_rate=error_rate)],
                        duration_s=12.0, warmup_s=2.0, seed=1, run_id=name)
    return run_dir


def _add_client_cpu(run_dir, client_cpu: dict) -> None:
    path = run_dir / "run.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "client_cpu": client_cpu}))


def test_run_validity_reads_a_run_directory(tmp_path):
    plain = _synthetic(tmp_path, "plain")  # no CPU samples, no arrivals: judged on errors only
    assert read_arrivals(plain).empty
    v = run_validity(plain)
    assert v.valid and math.isnan(v.client_cpu_share) and math.isnan(v.late_share)
    assert v.error_rate == 0.0

    meta = json.loads((plain / "run.json").read_text())
    start_s = meta["started_ns"] // S
    overloaded = _synthetic(tmp_path, "overloaded", error_rate=0.05)
    _add_client_cpu(overloaded, {"samples": [[meta["started_ns"] + t * S, 0.95 * t]
                                             for t in range(13)]})
    write_arrivals(overloaded, [{"t_start_ns": (start_s + t) * S, "t_end_ns": (start_s + t + 1) * S,
                                 "scheduled": 200, "late": 30, "dropped": 10}
                                for t in range(13)])
    v = run_validity(overloaded)
    assert not v.valid and len(v.reasons) == 3
    assert v.client_cpu_share == pytest.approx(0.95)
    assert v.late_share == pytest.approx(0.15) and v.dropped_share == pytest.approx(0.05)
    assert 0.03 < v.error_rate < 0.07

    # The analysis' runs table: the same verdict, through the same function.
    runs = load_runs([plain, overloaded]).runs.set_index("run_id")
    assert bool(runs.loc["plain", "valid"]) and runs.loc["plain", "invalid_reasons"] == ""
    assert not runs.loc["overloaded", "valid"]
    assert runs.loc["overloaded", "invalid_reasons"] == "; ".join(v.reasons)
