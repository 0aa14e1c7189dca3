"""Recommend a batching config per model from its capacity search, then check it by searching again.

The recommendation (`tritonload.analysis.recommend`) is a prediction from a cost fit; the
check is a measurement: the embedded server restarts with every recommended config at once
(`--set`), and each model's capacity is searched again, starting just under the capacity
measured before, so the second search needs fewer probes than the first. A server given by
``--url`` cannot be reconfigured from here: the recommendation is then reported unchecked.

Writes ``<out>/recommendations.json``: per model, the current and recommended configs, the
reasoning with its arithmetic, the cost fit, the batch formation per load level, and the
capacity before and after.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from tritonload.analysis.recommend import model_config, recommend_from_probes
from tritonload.cli.capacity import ProbePlan, Search, run_searches
from tritonload.cli.console import console
from tritonload.cli.headless import LOCUSTFILES, LocustRun
from tritonload.core.config import Target
from tritonload.core.errors import AlreadyReported
from tritonload.core.knee import Knee, SearchLimits
from tritonload.core.rundir import json_ready, write_json_atomic
from tritonload.core.schema import RECOMMENDATIONS_JSON

#: The check starts this far under the capacity measured before.
RESTART_SHARE = 0.9
#: Seconds of load on the restarted server before the checks' first probes.
WARM_UP_S = 5


def recommend_and_check(before: Sequence[Search],
                        restart: Callable[[list[str]], AbstractContextManager[Target]] | None,
                        limits: SearchLimits, timing: ProbePlan, out: Path,
                        budget_s: float | None) -> list[dict]:
    """Recommend for every batching search in ``before``; check on a reconfigured server.

    ``restart(overrides)`` starts the embedded server with extra ``--set`` overrides (and
    stops it on exit); None when the server cannot be reconfigured (``--url``).
    """
    rows: list[dict] = []
    checks: list[tuple[dict, Search]] = []
    overrides: list[str] = []
    for search in before:
        if search.tags.get("batching", "on") != "on" or not search.probes:
            continue
        run_dirs = [p.run_dir for p in search.probes if p.run_dir]
        rec, cost, formation = recommend_from_probes(run_dirs, search.model,
                                                     limits.slo_p95_us)
        knee_before = search.result()
        current = model_config(run_dirs[0], search.model)
        row = {"model": search.model, "protocol": search.protocol, "search": search.label,
               "status": rec.status,
               "current": {"max_queue_delay_us": current["current_delay_us"],
                           "preferred_batch_sizes": list(current["current_preferred"])},
               "recommended": {"max_queue_delay_us": rec.max_queue_delay_us,
                               "preferred_batch_sizes": [rec.preferred_batch_size]
                               if rec.preferred_batch_size else []},
               "predicted_capacity_rps": rec.predicted_capacity_rps,
               "reasoning": rec.reasoning, "pbtxt": rec.pbtxt, "cost_fit": cost.describe(),
               "formation": formation.to_dict("records"),
               "before": _knee_summary(knee_before), "after": None, "checked": False}
        rows.append(row)
        if rec.meets_slo:
            overrides += rec.set_options(search.model)
            start = knee_before.capacity_rps * RESTART_SHARE
            after = Search(search.model, search.protocol,
                           dataclasses.replace(limits, start_rps=start if start > 0
                                               else limits.start_rps),
                           search.out, label=f"{search.label}-recommended",
                           tags={**search.tags, "config": "recommended"})
            checks.append((row, after))
    if checks and restart is None:
        console.print("batching check skipped: a --url server cannot be reconfigured from here; "
                      "the recommendations are predictions only")
    elif checks:
        console.print(f"checking {len(checks)} recommended batching configs "
                      f"({', '.join(overrides)})", markup=False)
        with restart(overrides) as target:
            _warm_up([s for _, s in checks], target, out)
            run_searches([s for _, s in checks], target, timing, budget_s)
        for row, search in checks:
            row["after"] = _knee_summary(search.result())
            row["checked"] = True
    write_json_atomic(out / RECOMMENDATIONS_JSON, json_ready(rows))
    return rows


def _warm_up(searches: list[Search], target: Target, out: Path) -> None:
    """Load the restarted server for a few seconds before its first probe, then discard it.

    A check's first probe starts near the capacity measured before, on models that have just
    loaded. In one back-to-back pair of demo benches, that cold first probe of
    text_classifier at 1,250 req/s gave P95 74 ms where the warm one gave 37 ms, failed, and
    pulled the checked capacity 13% low (a "regression" the second bench did not see). Half
    of each model's start rate, all models at once, for WARM_UP_S seconds, fixes that.
    """
    rates = {s.model: s.limits.start_rps / 2 for s in searches}
    total = sum(rates.values())
    mix = ",".join(f"{model}:{rate / total:.4f}" for model, rate in rates.items())
    protocol = searches[0].protocol
    options = ["--mix", mix, "--mode", "open", "--rate", f"{total:.0f}", "--arrival", "poisson",
               "--max-in-flight", "512", "--tag", "warm_up=1"]
    job = LocustRun(LOCUSTFILES / "bench.py", target, out / "_warm_up", 1, WARM_UP_S,
                    user_classes=["Grpc" if protocol == "grpc" else "Http"], options=options)
    if job.execute(label=f"warming the restarted server up ({total:.0f} req/s)") == 2:
        raise AlreadyReported()
    shutil.rmtree(out / "_warm_up", ignore_errors=True)


def _knee_summary(k: Knee) -> dict:
    return {"status": k.status, "capacity_rps": k.capacity_rps,
            "capacity_lo_rps": k.capacity_lo_rps, "capacity_hi_rps": k.capacity_hi_rps,
            "p95_us": k.p95_us, "probes": len(k.probes), "explanation": k.explanation}
