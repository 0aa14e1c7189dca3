"""The answer a capacity planner reads first: one block per question, built from an Analysis.

The report opens with this (`report.json` ``answer``, then Markdown and HTML render it), and
`tritonload bench` prints it, so the first numbers anyone sees are the same everywhere:

* **capacity per model**: the highest rate within the P95 SLO with its 95% interval, the
  P95 and goodput there, with batching on and off (the twin), their ratio;
* **the recommended batching config**, with the capacity it reached when checked;
* **replicas for a target rate**, with the arithmetic;
* **sync vs async** in both framings, with Little's law's prediction beside the measurement;
* **what could not be trusted**: invalid runs and probes, never behind a headline number.

Pure: dicts and DataFrames in, a JSON-ready dict out.
"""

from __future__ import annotations

import math

import pandas as pd

from . import capacity
from .compare import IMPROVEMENT, NOT_SIGNIFICANT, REGRESSION
from .metrics import ALL_MODELS

INVALID = "invalid run"


def _num(x: object) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _knee(row: pd.Series | None) -> dict | None:
    if row is None:
        return None
    return {"label": row["label"], "status": row["status"],
            "capacity_rps": _num(row["capacity_rps"]),
            "capacity_lo_rps": _num(row["capacity_lo_rps"]),
            "capacity_hi_rps": _num(row["capacity_hi_rps"]),
            "p95_ms": _num(row["p95_us"] / 1000.0), "goodput": _num(row["goodput"]),
            "at_rps": _num(row["at_rps"]), "probes": int(row["probes"]),
            "explanation": row["explanation"]}


def _pick(knees: pd.DataFrame, **keys: str) -> pd.Series | None:
    mask = pd.Series(True, index=knees.index)
    for key, value in keys.items():
        mask &= knees[key] == value
    rows = knees[mask]
    return rows.iloc[0] if len(rows) else None


def _ratio(on: pd.Series | None, off: pd.Series | None) -> dict | None:
    if on is None or off is None:
        return None
    r = capacity.capacity_ratio(on, off)
    if _num(r["ratio"]) is None:
        return None
    lo, hi = _num(r["ratio_lo"]), _num(r["ratio_hi"])
    verdict = NOT_SIGNIFICANT if lo is None or lo <= 1 <= hi else (
        IMPROVEMENT if lo > 1 else REGRESSION)
    return {"ratio": _num(r["ratio"]), "lo": lo, "hi": hi, "verdict": verdict}


def capacity_answers(knees: pd.DataFrame, recommendations: list[dict],
                     target_rps: float | None, headroom: float) -> list[dict]:
    """Per base model and protocol: capacity, batching off, the check, replicas."""
    out = []
    if knees.empty:
        return out
    recs = {(r["model"], r["protocol"]): r for r in recommendations}
    for (model, protocol, objective), group in knees.groupby(
            ["base_model", "protocol", "objective"], sort=True):
        keys = {"base_model": model, "protocol": protocol, "objective": objective}
        on = _pick(knees, **keys, batching="on", config="current")
        off = _pick(knees, **keys, batching="off")
        after = _pick(knees, **keys, batching="on", config="recommended")
        slo_ms = float(group["slo_p95_us"].iloc[0]) / 1000.0
        row = {"model": model, "protocol": protocol,
               "objective": f"{objective} ≤ {slo_ms:g} ms", "capacity": _knee(on),
               "batching_off": _knee(off), "batching_gain": _ratio(on, off),
               "recommended": None, "replicas": None}
        rec = recs.get((model, protocol))
        if rec is not None:
            row["recommended"] = {
                "status": rec["status"], "current": rec["current"],
                "config": rec["recommended"], "pbtxt": rec["pbtxt"],
                "predicted_capacity_rps": _num(rec["predicted_capacity_rps"]),
                "reasoning": rec["reasoning"], "checked": bool(rec["checked"]),
                "capacity": _knee(after), "change": _ratio(after, on)}
        # Plan on the checked config only when the check showed a significant gain.
        best = on
        if (after is not None and on is not None and row["recommended"]
                and (row["recommended"]["change"] or {}).get("verdict") == IMPROVEMENT):
            best = after
        if target_rps and best is not None and (_num(best["capacity_rps"]) or 0) > 0:
            plan = capacity.replicas_needed(target_rps, float(best["capacity_rps"]), headroom)
            row["replicas"] = {"target_rps": target_rps, "replicas": plan.replicas,
                               "config": best["config"], "arithmetic": plan.arithmetic}
        out.append(row)
    return out


def _pair_validity(runs: pd.DataFrame, run_ids: str) -> list[str]:
    if "valid" not in runs or not run_ids:
        return []
    ids = [r for r in str(run_ids).split(",") if r]
    bad = runs[runs["run_id"].astype(str).isin(ids) & ~runs["valid"].astype(bool)]
    return [f"{r.run_id}: {r.invalid_reasons}" for r in bad.itertuples()]


def sync_async_answers(sync_async: pd.DataFrame, runs: pd.DataFrame) -> list[dict]:
    """Sync vs async per framing × protocol, on the whole mix (a model's own rows otherwise).

    A pair with an invalid run keeps its numbers in the tables further down but has no
    verdict here: its ``verdict`` is ``"invalid run"`` and ``invalid`` lists why.
    """
    if sync_async is None or sync_async.empty:
        return []
    frame = sync_async
    if (frame["model"].astype(str) == ALL_MODELS).any():
        frame = frame[frame["model"].astype(str) == ALL_MODELS]
    out = []
    for r in frame.sort_values(["framing", "protocol", "load_level"]).to_dict("records"):
        invalid = (_pair_validity(runs, r.get("run_a", "")) +
                   _pair_validity(runs, r.get("run_b", "")))
        out.append({
            "framing": r["framing"], "model": str(r["model"]), "protocol": r["protocol"],
            "sync": f"{r['users_a']:g} users × 1" if _num(r["users_a"]) else "",
            "async": (f"{r['users_b']:g} users × {r['in_flight_b'] / r['users_b']:g} in flight"
                      if _num(r["users_b"]) else ""),
            "in_flight_sync": _num(r["in_flight_a"]), "in_flight_async": _num(r["in_flight_b"]),
            "rounds": int(r["rounds"]) if _num(r["rounds"]) else 0,
            "throughput_sync": _num(r["throughput_a"]),
            "throughput_async": _num(r["throughput_b"]),
            "throughput_ratio": _num(r["throughput_ratio"]),
            "throughput_lo": _num(r["throughput_ratio_lo"]),
            "throughput_hi": _num(r["throughput_ratio_hi"]),
            "throughput_verdict": INVALID if invalid else r["throughput_verdict"],
            "p95_sync_ms": _num(r["p95_a_us"] / 1000.0),
            "p95_async_ms": _num(r["p95_b_us"] / 1000.0),
            "p95_ratio": _num(r["p95_ratio"]), "p95_lo": _num(r["p95_ratio_lo"]),
            "p95_hi": _num(r["p95_ratio_hi"]),
            "p95_verdict": INVALID if invalid else r["p95_verdict"],
            "predicted_ratio": _num(r.get("predicted_ratio")),
            "latency_ratio": _num(r.get("latency_ratio")),
            "regime": r.get("regime") or "",
            "invalid": invalid,
        })
    return out


def littles_law_text(rows: list[dict]) -> list[str]:
    """One sentence per equal-users pair: what Little's law predicted and what happened."""
    lines = []
    for r in rows:
        if r["framing"] != "equal-users" or r["throughput_ratio"] is None:
            continue
        k = (r["in_flight_async"] or 0) / (r["in_flight_sync"] or 1)
        lat = r["latency_ratio"]
        lines.append(
            f"{r['protocol']}: {r['sync']} → {r['async']} puts {k:g}× the requests in flight. "
            f"Little's law (throughput = in flight ÷ latency) predicts {k:g} ÷ "
            f"{lat:.2f} (the latency ratio) = {r['predicted_ratio']:.2f}×; measured "
            f"{r['throughput_ratio']:.2f}× [{_fmt(r['throughput_lo'])}, "
            f"{_fmt(r['throughput_hi'])}], P95 {_fmt(r['p95_ratio'])}×. Regime: "
            f"{r['regime'] or 'n/a'}: async multiplies throughput only while the server has "
            "spare capacity (latency barely grows with the extra requests, ratio near k); "
            "once it is saturated the extra requests only queue (latency grows k×, ratio "
            "near 1)." if lat else
            f"{r['protocol']}: {r['sync']} → {r['async']}: measured "
            f"{r['throughput_ratio']:.2f}×.")
    return lines


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def invalid_items(runs: pd.DataFrame, probes: pd.DataFrame) -> list[dict]:
    """Every run and probe whose numbers cannot be trusted, with why."""
    items = []
    if "valid" in runs and len(runs):
        for r in runs[~runs["valid"].astype(bool)].itertuples():
            items.append({"what": f"run {r.run_id} ({getattr(r, 'cell', '') or r.path})",
                          "reasons": r.invalid_reasons})
    if len(probes):
        for r in probes[~probes["trusted"].astype(bool)].itertuples():
            items.append({"what": f"probe {r.label} @ {r.offered_rps:.0f} req/s",
                          "reasons": r.reasons})
    return items


def answer(analysis: object) -> dict:
    """The story-first block of report.json (see the module docstring)."""
    a = analysis
    params = a.params
    svsa = sync_async_answers(a.sync_async, a.runs)
    return {
        "slo_p95_ms": params.get("slo_p95_ms"),
        "target_rps": params.get("target_rps"),
        "headroom": params.get("headroom"),
        "max_error_rate": params.get("max_error_rate"),
        "models": capacity_answers(a.knees, a.recommendations, params.get("target_rps"),
                                   params.get("headroom") or capacity.DEFAULT_HEADROOM),
        "sync_async": svsa,
        "littles_law": littles_law_text(svsa),
        "claim": {"summary": a.async_claim.get("summary", ""),
                  "verdict": a.async_claim.get("verdict", "")},
        "invalid": invalid_items(a.runs, a.probes),
    }
