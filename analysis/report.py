"""Reports: ``report.json`` (every number), ``report.md`` and a self-contained ``report.html``.

The JSON document is built first; Markdown and HTML are rendered from it through one list of
sections, so the three formats always show the same numbers.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from tritonload.core.errors import UsageError

from . import plots
from .answer import answer
from .compare import IMPROVEMENT, NOT_SIGNIFICANT, REGRESSION
from .metrics import ALL_MODELS
from .pipeline import Analysis

log = logging.getLogger(__name__)

REPORT_FORMAT = "tritonload-report"
REPORT_VERSION = 1

# ---------------------------------------------------------------------------------------------
# JSON document


def _clean(value: object) -> object:
    """Make a value JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_clean(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _records(frame: pd.DataFrame | None, drop_prefix: tuple[str, ...] = ("boot_",),
             drop: tuple[str, ...] = ("cdf_us",)) -> list[dict]:
    if frame is None or frame.empty:
        return []
    keep = [c for c in frame.columns if not c.startswith(drop_prefix) and c not in drop]
    if "model" in frame.columns:  # models in order, the all-models aggregate last
        order = [c for c in ("protocol", "mode", "load_kind", "load_level", "run_id")
                 if c in frame.columns]
        frame = frame.assign(_all=frame["model"].astype(str) == ALL_MODELS,
                             _model=frame["model"].astype(str))
        frame = frame.sort_values(["_all", "_model", *order], kind="stable")
    return [_clean(r) for r in frame[keep].to_dict("records")]


def report_data(analysis: Analysis) -> dict:
    """Build the JSON report: every number the Markdown and HTML reports show, and more.

    Args:
        analysis: :func:`analysis.pipeline.analyze`.

    Returns:
        A JSON-serialisable dict (NaN becomes ``null``).

    """
    a = analysis
    runs = a.runs.merge(a.windows, on="run_id", how="left")
    data = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": _clean(a.params),
        "warnings": list(a.warnings),
        "runs": _records(runs),
        "groups": _records(a.requests),
        "errors": _records(a.errors),
        "server": _records(a.server),
        "batch_histogram": _records(a.batch_hist),
        "time_breakdown": _records(a.breakdown),
        "sync_vs_async": {
            "pairs": _records(a.sync_async),
            "claim": {**_clean(a.async_claim),
                      "pairs": _records(pd.DataFrame(a.async_claim["pairs"]))},
        },
        "grpc_vs_http": _records(a.grpc_http),
        "batching": _records(a.batching),
        "shared_vs_wire": _records(a.shared_wire),
        "generations": _records(a.generations),
        "interference": _records(a.interference),
        "capacity": {
            "curves": _records(a.curves),
            "limits": _records(a.limits),
            "replicas": _records(a.plan),
        },
    }
    data["headline"] = _headline(data)
    data["capacity"]["searches"] = _records(a.knees)
    data["capacity"]["probes"] = _records(a.probes)
    data["recommendations"] = _clean(a.recommendations)
    data["outages"] = _records(a.outages)
    data["ensemble_steps"] = _records(a.steps)
    data["resources"] = _records(a.resources)
    data["pending"] = _records(a.pending)
    data["unread_metrics"] = dict(a.unread_metrics)
    data["unserved"] = {run_id: list(names) for run_id, names in a.unserved.items()}
    data["probe_resources"] = _records(a.probe_resources)
    data["answer"] = _clean(answer(a))
    return data


# ---------------------------------------------------------------------------------------------
# Formatting (shared by Markdown and HTML)


def _na(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_rps(x: float | None) -> str:
    """Format a rate in req/s."""
    return "n/a" if _na(x) else f"{x:.1f}"


def fmt_ms(us: float | None) -> str:
    """Format a µs latency as ms."""
    return "n/a" if _na(us) else f"{us / 1000.0:.2f}"


def fmt_ratio(x: float | None) -> str:
    """Format a ratio."""
    return "n/a" if _na(x) else f"{x:.2f}×"


def fmt_pct(x: float | None) -> str:
    """Format a share as a percentage."""
    return "n/a" if _na(x) else f"{x:.2%}"


def fmt_num(x: float | None, digits: int = 2) -> str:
    """Format a plain number."""
    return "n/a" if _na(x) else f"{x:.{digits}f}"


def fmt_ci(lo: float | None, hi: float | None, fmt=fmt_rps) -> str:
    """Format a confidence interval."""
    if _na(lo) or _na(hi):
        return "n/a"
    return f"[{fmt(lo)}, {fmt(hi)}]"


def fmt_load(kind: str, level: float | str) -> str:
    """Format a load level with its unit."""
    if isinstance(level, str):
        return level
    unit = "in flight" if kind == "concurrency" else "req/s"
    return f"{level:g} {unit}"


def _group_label(r: dict) -> str:
    return f"{r['model']} {r['protocol']} {r['mode']} @{fmt_load(r['load_kind'], r['load_level'])}"


def _verdict_text(v: str) -> str:
    return {IMPROVEMENT: "better", REGRESSION: "worse"}.get(v, v)


def _span(rows: list[dict], key: str, verdict_key: str, better: str, worse: str) -> str:
    values = [r[key] for r in rows if r[key] is not None]
    if not values:
        return "n/a"
    lo, hi = min(values), max(values)
    span = fmt_ratio(lo) if lo == hi else f"{fmt_ratio(lo)}–{fmt_ratio(hi)}"
    counts = {v: sum(r[verdict_key] == v for r in rows)
              for v in (IMPROVEMENT, REGRESSION, NOT_SIGNIFICANT)}
    parts = [f"{better} in {counts[IMPROVEMENT]}", f"{worse} in {counts[REGRESSION]}",
             f"not significant in {counts[NOT_SIGNIFICANT]}"]
    n = len(rows)
    return f"{span} over {n} pair{'s' if n > 1 else ''} ({', '.join(parts)})"


def _model_order(name: str) -> tuple[bool, str]:
    return (name == ALL_MODELS, name)


def _headline(d: dict) -> list[str]:
    lines: list[str] = []
    runs, groups = d["runs"], d["groups"]
    models = sorted({g["model"] for g in groups if g["model"] != ALL_MODELS})
    levels = [fmt_load(k, v) for k, v in sorted({(r["load_kind"], r["load_level"])
                                                  for r in runs})]
    lines.append(
        f"{len(runs)} run(s), "
        f"{sum(g['requests'] for g in groups if g['model'] != ALL_MODELS):,} "
        f"requests in steady windows; models: {', '.join(models) or 'none'}; "
        f"protocols: {', '.join(sorted({g['protocol'] for g in groups})) or 'none'}; "
        f"modes: {', '.join(sorted({g['mode'] for g in groups})) or 'none'}; "
        f"load levels: {', '.join(levels) or 'none'}."
    )
    lines.append(d["sync_vs_async"]["claim"]["summary"])
    p = d["parameters"]
    cap = d["capacity"]
    if p.get("slo_p95_ms") is None:
        lines.append("No P95 SLO given (--slo-p95-ms): max load under an SLO not computed.")
    else:
        replicas = {(r["model"], r["protocol"], r["mode"], r["load_kind"]): r
                    for r in cap["replicas"]}
        by_model: dict[str, list[str]] = {}
        for lim in cap["limits"]:
            key = (lim["model"], lim["protocol"], lim["mode"], lim["load_kind"])
            where = f"{lim['protocol']}/{lim['mode']}"
            if lim["status"] == "slo never met":
                text = f"{where} none (SLO never met)"
            elif lim["status"] == "slo never crossed":
                text = f"{where} ≥ {fmt_rps(lim['max_rps'])} req/s (SLO never crossed)"
            else:
                text = (f"{where} {fmt_rps(lim['max_rps'])} req/s at "
                        f"{fmt_load(lim['load_kind'], lim['at_load_level'])}")
            rep = replicas.get(key)
            if rep is not None and rep["replicas"] is not None:
                bound = "≤ " if rep["note"] else ""
                text += f" → {bound}{rep['replicas']} replica(s)"
            by_model.setdefault(lim["model"], []).append(text)
        head = (f"Capacity = the highest measured ok req/s with P95 ≤ {p['slo_p95_ms']:g} ms "
                f"and errors ≤ {fmt_pct(p['max_error_rate'])}")
        if cap["replicas"]:
            head += (f"; replicas for {p['target_rps']:g} req/s with {p['headroom']:.0%} "
                     "headroom (arithmetic under Capacity)")
        lines.append(head + ".")
        for model in sorted(by_model, key=_model_order):
            lines.append(f"Capacity of {model}: {'; '.join(by_model[model])}.")
    for model in sorted({r["model"] for r in d["grpc_vs_http"]} - {ALL_MODELS}):
        rows = [r for r in d["grpc_vs_http"] if r["model"] == model]
        lines.append(
            f"HTTP vs gRPC, {model} ({_bytes(rows[0]['mean_bytes_sent'])} sent, "
            f"{_bytes(rows[0]['mean_bytes_received'])} received per request): throughput "
            "ratio "
            + _span(rows, "throughput_ratio", "throughput_verdict", "HTTP faster", "HTTP slower")
            + "; P95 ratio "
            + _span(rows, "p95_ratio", "p95_verdict", "HTTP lower", "HTTP higher") + ".")
    for model in sorted({r["model"] for r in d["shared_vs_wire"]}, key=_model_order):
        rows = [r for r in d["shared_vs_wire"] if r["model"] == model]
        cpu = [r["cpu_ratio"] for r in rows if r["cpu_ratio"] is not None]
        lines.append(
            f"Shared memory vs the wire, {model} ({_bytes(rows[0]['mean_bytes_sent_a'])} sent, "
            f"{_bytes(rows[0]['mean_bytes_received_a'])} received per request on the wire): "
            "throughput ratio "
            + _span(rows, "throughput_ratio", "throughput_verdict", "faster", "slower")
            + "; P95 ratio " + _span(rows, "p95_ratio", "p95_verdict", "lower", "higher")
            + (f"; client CPU per request {min(cpu):.2f}–{max(cpu):.2f}×" if cpu else "")
            + ".")
    for model in sorted({r["model"] for r in d["generations"]}):
        rows = [r for r in d["generations"] if r["model"] == model]
        best = max(rows, key=lambda r: r["output_tokens_per_s"])
        lines.append(
            f"Generations, {model}: TTFT P95 {fmt_num(min(r['ttft_p95_ms'] for r in rows))}–"
            f"{fmt_num(max(r['ttft_p95_ms'] for r in rows))} ms, ITL P95 "
            f"{fmt_num(min(r['itl_p95_ms'] for r in rows))}–"
            f"{fmt_num(max(r['itl_p95_ms'] for r in rows))} ms; at most "
            f"{best['output_tokens_per_s']:,.0f} output tokens/s "
            f"({fmt_load(best['load_kind'], best['load_level'])}, ITL P95 "
            f"{fmt_num(best['itl_p95_ms'])} ms).")
    for model in sorted({r["model"] for r in d["batching"]}):
        rows = [r for r in d["batching"] if r["model"] == model]
        batch_on = [r["mean_batch_on"] for r in rows if r["mean_batch_on"] is not None]
        lines.append(
            f"Dynamic batching, {model} vs {model}_nobatch: throughput gain "
            f"{_span(rows, 'throughput_gain', 'throughput_verdict', 'a gain', 'a loss')}; "
            f"P95 ratio {_span(rows, 'p95_ratio', 'p95_verdict', 'lower', 'higher')}"
            + (f"; mean batch size {min(batch_on):.2f}–{max(batch_on):.2f} with batching"
               if batch_on else "") + ".")
    worst = max((g for g in groups if g["model"] != ALL_MODELS and g["error_rate"]),
                key=lambda g: g["error_rate"], default=None)
    if worst is None:
        lines.append("No failed request in any steady window.")
    else:
        lines.append(f"Highest error rate: {fmt_pct(worst['error_rate'])} "
                     f"({_group_label(worst)}).")
    over = [b for b in d["time_breakdown"] if b["model"] != ALL_MODELS
            and b["overhead_share"] is not None]
    if over:
        b = max(over, key=lambda b: b["overhead_share"])
        lines.append(
            f"Largest client overhead: {fmt_pct(b['overhead_share'])} of the mean latency "
            f"({fmt_ms(b['client_overhead_us'])} of {fmt_ms(b['mean_latency_us'])} ms) for "
            f"{_group_label(b)}: time spent outside Triton's queue and compute.")
    lines.extend(f"Warning: {w}" for w in d["warnings"])
    return lines


def _bytes(x: float | None) -> str:
    if _na(x):
        return "n/a"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if x >= size:
            return f"{x / size:.1f} {unit}"
    return f"{x:.0f} B"


# ---------------------------------------------------------------------------------------------
# Sections: one description, two renderings


def _sections(d: dict) -> list[dict]:
    p = d["parameters"]
    loads = {r["run_id"]: fmt_load(r["load_kind"], r["load_level"]) for r in d["runs"]}
    s: list[dict] = []
    s.append({"title": "Runs", "paragraphs": [
        "Steady window: requests count when they complete inside it. Warm-up dropped: "
        "`warmup_s` from run.json when > 0, else the first "
        f"{p['warmup_fraction']:.0%} of the run capped at {p['warmup_cap_s']:g} s; the last "
        "partial second is dropped too."],
        "table": (["run", "mode", "load", "users", "max in flight", "window (s)",
                   "warm-up dropped (s)", "rule", "records"],
                  [[r["run_id"], r["mode"], fmt_load(r["load_kind"], r["load_level"]),
                    "n/a" if r["users"] is None else str(r["users"]),
                    "n/a" if r["max_in_flight"] is None else str(r["max_in_flight"]),
                    fmt_num(r["duration_s"], 1), fmt_num(r["warmup_dropped_s"], 1),
                    r["warmup_rule"], str(r["request_count"])] for r in d["runs"]])})
    s[-1]["paragraphs"] += _unserved_lines(d)
    s.append({"title": "Throughput and latency", "paragraphs": [
        "Throughput: successful requests per second of steady window. Latency: exact "
        "percentiles of successful requests (ms, from raw µs). Brackets: bootstrap 95% "
        "intervals."],
        "table": (["model", "protocol", "mode", "load", "ok req/s", "95% CI", "P50 ms",
                   "P90 ms", "P95 ms", "P95 95% CI", "P99 ms", "P99.9 ms", "max ms",
                   "errors"],
                  [[g["model"], g["protocol"], g["mode"],
                    fmt_load(g["load_kind"], g["load_level"]), fmt_rps(g["throughput_rps"]),
                    fmt_ci(g["throughput_lo"], g["throughput_hi"]), fmt_ms(g["p50_us"]),
                    fmt_ms(g["p90_us"]), fmt_ms(g["p95_us"]),
                    fmt_ci(g["p95_lo_us"], g["p95_hi_us"], fmt_ms), fmt_ms(g["p99_us"]),
                    fmt_ms(g["p99_9_us"]), fmt_ms(g["max_us"]), fmt_pct(g["error_rate"])]
                   for g in d["groups"]]),
        "images": ["throughput_vs_load", "latency_cdf"]})
    if d["errors"]:
        s.append({"title": "Errors by kind", "paragraphs": [],
                  "table": (["model", "protocol", "mode", "load", "kind", "count", "rate"],
                            [[e["model"], e["protocol"], e["mode"], loads[e["run_id"]],
                              e["error_kind"], str(e["count"]), fmt_pct(e["rate"])]
                             for e in d["errors"]])})
    if d["outages"]:
        s.append({"title": "Outages", "paragraphs": [
            "Intervals in which every request failed for 2 s or more (run.json `outages`, "
            "judged once a second). A run with one in its steady window is invalid: its "
            "numbers would average the outage with the service around it."],
            "table": (["run", "from (s)", "to (s)", "duration (s)", "kind", "message"],
                      [[o["run_id"], fmt_num(o["start_s"], 1),
                        "end of run" if o["open"] else fmt_num(o["end_s"], 1),
                        fmt_num(o["duration_s"], 1), o["kind"], o["message"][:120]]
                       for o in d["outages"]]),
            "images": ["outage_timeline"]})
    s.append(_capacity_section(d))
    claim = d["sync_vs_async"]["claim"]
    s.append({"title": "Sync vs async", "paragraphs": [
        claim["summary"],
        "Ratios are async ÷ sync at equal load level (for closed loop: equal concurrency, "
        "users × max in flight); an interval containing 1 is not significant."],
        "table": (["model", "protocol", "load", "sync req/s", "async req/s", "throughput ratio",
                   "95% CI", "P95 sync ms", "P95 async ms", "P95 ratio", "95% CI",
                   "claim: throughput", "claim: P95", "claim"],
                  [[r["model"], r["protocol"], fmt_load(r["load_kind"], r["load_level"]),
                    fmt_rps(r["throughput_a"]), fmt_rps(r["throughput_b"]),
                    fmt_ratio(r["throughput_ratio"]),
                    fmt_ci(r["throughput_ratio_lo"], r["throughput_ratio_hi"], fmt_ratio),
                    fmt_ms(r["p95_a_us"]), fmt_ms(r["p95_b_us"]), fmt_ratio(r["p95_ratio"]),
                    fmt_ci(r["p95_ratio_lo"], r["p95_ratio_hi"], fmt_ratio),
                    r["throughput_part"], r["p95_part"], r["verdict"]]
                   for r in claim["pairs"]])})
    s.append({"title": "gRPC vs HTTP", "paragraphs": [
        "Ratios are HTTP ÷ gRPC at equal mode and load, ordered by request payload size."],
        "table": (["model", "mode", "load", "sent/req", "received/req", "gRPC req/s",
                   "HTTP req/s", "throughput ratio", "95% CI", "verdict", "P95 gRPC ms",
                   "P95 HTTP ms", "P95 ratio", "95% CI", "verdict"],
                  [[r["model"], r["mode"], fmt_load(r["load_kind"], r["load_level"]),
                    _bytes(r["mean_bytes_sent"]), _bytes(r["mean_bytes_received"]),
                    *_pair_cells(r)] for r in d["grpc_vs_http"]])})
    s.append({"title": "Dynamic batching on vs off", "paragraphs": [
        "`<model>` (batching on) against `<model>_nobatch`. Ratios are on ÷ off; mean batch "
        "size = Σinference ÷ Σexecution; queue and compute are server means per request."],
        "table": (["model", "protocol", "mode", "load", "req/s on", "req/s off", "gain",
                   "95% CI", "verdict", "P95 on ms", "P95 off ms", "P95 ratio", "95% CI", "verdict",
                   "batch on", "batch off", "queue on", "queue off", "compute on",
                   "compute off"],
                  [[r["model"], r["protocol"], r["mode"],
                    fmt_load(r["load_kind"], r["load_level"]), fmt_rps(r["throughput_on"]),
                    fmt_rps(r["throughput_off"]), fmt_ratio(r["throughput_gain"]),
                    fmt_ci(r["throughput_gain_lo"], r["throughput_gain_hi"], fmt_ratio),
                    _verdict_text(r["throughput_verdict"]), fmt_ms(r["p95_on_us"]),
                    fmt_ms(r["p95_off_us"]), fmt_ratio(r["p95_ratio"]),
                    fmt_ci(r["p95_ratio_lo"], r["p95_ratio_hi"], fmt_ratio),
                    _verdict_text(r["p95_verdict"]), fmt_num(r["mean_batch_on"]),
                    fmt_num(r["mean_batch_off"]), fmt_ms(r["queue_on_us"]),
                    fmt_ms(r["queue_off_us"]), fmt_ms(r["compute_on_us"]),
                    fmt_ms(r["compute_off_us"])] for r in d["batching"]]),
        "images": ["batch_histograms"]})
    if d.get("shared_vs_wire"):
        s.append(_shared_memory_section(d["shared_vs_wire"]))
    if d["generations"]:
        s.append(_generation_section(d))
        s.append(_interference_section(d))
    s.append(_resources_section(d, loads))
    probes = _probe_resources_section(d)
    if probes is not None:
        s.append(probes)
    s.append({"title": "Where the time goes", "paragraphs": [
        "Mean per successful request, ms. Client overhead = client mean latency − Triton's "
        "queue + compute time: serialisation, network, the HTTP/gRPC front end and the "
        "client. A large share here is the signature of a model that is fast locally but "
        "slow behind Triton. 'shared': the run sent this model over several protocols or "
        "modes, whose server statistics cannot be told apart.",
        *_unserved_lines(d, "statistics")],
        "table": (["model", "protocol", "mode", "load", "client mean", "queue",
                   "compute input", "compute infer", "compute output", "client overhead",
                   "overhead share", "server stats"],
                  [[b["model"], b["protocol"], b["mode"],
                    fmt_load(b["load_kind"], b["load_level"]), fmt_ms(b["mean_latency_us"]),
                    fmt_ms(b["queue_us"]), fmt_ms(b["compute_input_us"]),
                    fmt_ms(b["compute_infer_us"]), fmt_ms(b["compute_output_us"]),
                    fmt_ms(b["client_overhead_us"]), fmt_pct(b["overhead_share"]),
                    "shared" if b["server_shared"] else "own"] for b in d["time_breakdown"]]),
        "images": ["time_breakdown"]})
    if d["ensemble_steps"]:
        s.append(_steps_section(d, loads))
    s.append({"title": "Method", "paragraphs": [
        "Percentiles: numpy linear interpolation over every raw µs latency of the steady "
        "window (never Locust's rounded buckets). Intervals: 95% percentile bootstrap, "
        f"{p['n_boot']} replicates, seed {p['seed']}; throughput by resampling per-second "
        "counts, percentiles by an exact order-statistic bootstrap. A ratio whose interval "
        "contains 1 (a difference whose interval contains 0) is labelled not significant "
        "and never called a win. See docs/capacity-planning.md."]})
    return s


#: What a report lacks without each extension (run.json ``extensions``).
_UNSERVED = {
    "statistics": "no server-side queue and compute breakdown, batch sizes or "
                  "batching recommendation",
    "model_configuration": "the batch dimension was inferred from the metadata shapes, and "
                           "the largest batch is unknown",
    "repository_index": "the served models are not listed",
    "system_shared_memory": "no shared-memory transfers",
}


def _unserved_lines(d: dict, only: str | None = None) -> list[str]:
    """One line per extension the runs' server did not serve: what the report lacks."""
    runs_of: dict[str, list[str]] = {}
    for run_id, names in sorted(d["unserved"].items()):
        for name in names:
            if only in (None, name):
                runs_of.setdefault(name, []).append(run_id)
    return [f"{name.replace('_', ' ').capitalize()}: not served by this server (run "
            f"{', '.join(run_ids)}): {_UNSERVED.get(name, 'not read')}."
            for name, run_ids in runs_of.items()]


def _steps_section(d: dict, loads: dict[str, str]) -> dict:
    """Where an ensemble's time goes, step by step (perf_analyzer's composing models)."""
    rows = sorted(d["ensemble_steps"], key=lambda r: (r["run_id"], r["ensemble"], r["step"]))
    lines = []
    for r in rows:
        if r["bottleneck"]:
            lines.append(f"{r['ensemble']} at {loads.get(r['run_id'], '')}: the bottleneck is "
                         f"step {r['step'] + 1}, {r['model']}, {fmt_ms(r['step_us'])} ms of "
                         f"the steps' {fmt_ms(r['step_us'] / r['share'] if r['share'] else None)}"
                         f" ms per request ({fmt_pct(r['share'])}).")
    shared = sorted({r["model"] for r in rows if r["shared"]})
    if shared:
        lines.append(f"{', '.join(shared)} also served the mix directly: Triton counts a "
                     "model's requests together, so its step times include that traffic "
                     "(contention included), and its own rows above include the ensemble's.")
    return {"title": "Where the time goes: ensemble steps", "paragraphs": [
        "Triton's statistics of each ensemble's steps (its composing models), mean per "
        "request over the steady window, ms: the ensemble's own queue is its scheduler's "
        "and its compute adds the steps' up, so only the steps show where requests wait.",
        *lines],
        "table": (["ensemble", "load", "step", "model", "requests", "queue", "compute input",
                   "compute infer", "compute output", "step total", "share", "bottleneck"],
                  [[r["ensemble"], loads.get(r["run_id"], ""), str(r["step"] + 1), r["model"],
                    str(r["requests"]), fmt_ms(r["queue_us"]), fmt_ms(r["compute_input_us"]),
                    fmt_ms(r["compute_infer_us"]), fmt_ms(r["compute_output_us"]),
                    fmt_ms(r["step_us"]), fmt_pct(r["share"]),
                    "← bottleneck" if r["bottleneck"] else ""] for r in rows])}


def _has_gpu_and_energy(rows: list[dict]) -> tuple[bool, bool]:
    """Whether any row has GPU metrics, and an energy counter."""
    return (any((r["gpus"] or 0) > 0 for r in rows),
            any(not _na(r["energy_j"]) for r in rows))


def _resource_headers(gpu: bool, energy: bool) -> list[str]:
    return (["server req/s", "CPU util", "CPU memory"]
            + (["GPUs", "GPU util", "GPU memory", "power W"] if gpu else [])
            + (["J/inference", "inferences/J"] if energy else [])
            + ["pending mean", "pending max"])


def _resource_cells(r: dict, gpu: bool, energy: bool) -> list[str]:
    """One resource row's cells, in `_resource_headers` order (GPU columns only with GPUs)."""
    cells = [fmt_rps(r["requests_per_s"]), fmt_pct(r["cpu_utilization"]),
             _bytes(r["cpu_memory_used_bytes"])]
    if gpu:
        cells += [str(r["gpus"]), fmt_pct(r["gpu_utilization"]),
                  f"{_bytes(r['gpu_memory_used_bytes'])} of "
                  f"{_bytes(r['gpu_memory_total_bytes'])}", fmt_num(r["gpu_power_w"], 1)]
    if energy:
        cells += [fmt_num(r["joules_per_inference"], 4), fmt_num(r["inferences_per_joule"], 1)]
    return cells + [fmt_num(r["pending_mean"], 1), fmt_num(r["pending_max"], 0)]


def _generation_section(d: dict) -> dict:
    """The LLM users' generations: TTFT, ITL, E2E, tokens per second (`analysis.generation`)."""
    p = d["parameters"]
    limits = [f"TTFT ≤ {p['slo_ttft_ms']:g} ms" if p.get("slo_ttft_ms") else "",
              f"mean gap ≤ {p['slo_itl_ms']:g} ms" if p.get("slo_itl_ms") else ""]
    goodput = " and ".join(x for x in limits if x)
    return {"title": "Generations (LLM token streams)", "paragraphs": [
        "Per run, over its steady window, of the generations that succeeded: TTFT from the "
        "send (the scheduled send, in open loop) to the first token; time to second token "
        "(TT2T) is the first gap; ITL pools every gap between tokens; E2E is the whole "
        "generation. Output tokens/s counts every token received in the window. "
        + (f"Goodput: generations per second with {goodput}, each judged on its own."
           if goodput else "Goodput needs --slo-ttft-ms and/or --slo-itl-ms.")],
        "table": (["model", "protocol", "mode", "load", "generations", "errors", "ISL", "OSL",
                   "TTFT P50 ms", "TTFT P95 ms", "TTFT P99 ms", "TT2T P50 ms", "ITL P50 ms",
                   "ITL P95 ms", "ITL P99 ms", "E2E P50 ms", "E2E P95 ms", "gen/s",
                   "output tokens/s", "goodput/s"],
                  [[r["model"], r["protocol"], r["mode"],
                    fmt_load(r["load_kind"], r["load_level"]), str(r["generations"]),
                    fmt_pct(r["error_rate"]), fmt_num(r["tokens_in_mean"], 0),
                    fmt_num(r["tokens_out_mean"], 0), fmt_num(r["ttft_p50_ms"]),
                    fmt_num(r["ttft_p95_ms"]), fmt_num(r["ttft_p99_ms"]),
                    fmt_num(r["tt2t_p50_ms"]), fmt_num(r["itl_p50_ms"]),
                    fmt_num(r["itl_p95_ms"]), fmt_num(r["itl_p99_ms"]),
                    fmt_num(r["e2e_p50_ms"]), fmt_num(r["e2e_p95_ms"]),
                    fmt_num(r["request_rps"]), fmt_num(r["output_tokens_per_s"], 0),
                    fmt_num(r["goodput_rps"])] for r in d["generations"]]),
        "images": ["generation_latency_vs_load", "tokens_vs_itl"]}


def _interference_section(d: dict) -> dict:
    """Classic requests beside the generations: latency with fewer vs more in flight."""
    paras = [
        "Each classic request of a run that also streams generations, split at the median "
        "count of generations in flight when it was sent (`analysis.interference`): its P50 "
        "and P95 with at most that many in flight, and with more. A P95 ratio near 1: the "
        "classic model does not feel the LLM traffic."]
    if not d["interference"]:
        paras.append("No run had the spread of generations in flight a split needs "
                     "(closed-loop LLM users keep it about constant): compare the run with "
                     "one without its LLM users (tritonload compare), or send the "
                     "generations open loop.")
        return {"title": "LLM and classic traffic together", "paragraphs": paras, "table": None}
    return {"title": "LLM and classic traffic together", "paragraphs": paras,
            "table": (["run", "classic model", "protocol", "generations in flight (split)",
                       "requests ≤ / >", "P50 ms ≤ / >", "P95 ms ≤ / >", "P95 > ÷ ≤"],
                      [[r["run_id"], r["model"], r["protocol"], fmt_num(r["split_at"], 0),
                        f"{r['requests_low']} / {r['requests_high']}",
                        f"{fmt_num(r['p50_low_ms'])} / {fmt_num(r['p50_high_ms'])}",
                        f"{fmt_num(r['p95_low_ms'])} / {fmt_num(r['p95_high_ms'])}",
                        f"{fmt_num(r['p95_ratio'], 2)}×"] for r in d["interference"]])}


def _pair_cells(r: dict) -> list[str]:
    """A paired comparison's cells: throughput a, b, ratio, CI, verdict; the same for P95."""
    return [fmt_rps(r["throughput_a"]), fmt_rps(r["throughput_b"]),
            fmt_ratio(r["throughput_ratio"]),
            fmt_ci(r["throughput_ratio_lo"], r["throughput_ratio_hi"], fmt_ratio),
            _verdict_text(r["throughput_verdict"]), fmt_ms(r["p95_a_us"]),
            fmt_ms(r["p95_b_us"]), fmt_ratio(r["p95_ratio"]),
            fmt_ci(r["p95_ratio_lo"], r["p95_ratio_hi"], fmt_ratio),
            _verdict_text(r["p95_verdict"])]


def _shared_memory_section(rows: list[dict]) -> dict:
    """Shared memory against the wire: the same cell, shared ÷ wire (`analysis.shared_memory`)."""
    return {"title": "Shared memory vs the wire", "paragraphs": [
        "Each cell run with its tensors in system shared memory (`--shared-memory system`) "
        "beside the same cell over the wire, paired by round; ratios are shared ÷ wire. Bytes "
        "are per request as each side sent and received them. Client CPU is the whole run's "
        "per request; its interval is the spread between rounds alone (one figure per run)."],
        "table": (["model", "protocol", "mode", "load", "sent/req wire → shm",
                   "received/req wire → shm", "req/s wire", "req/s shm", "throughput ratio",
                   "95% CI", "verdict", "P95 wire ms", "P95 shm ms", "P95 ratio", "95% CI",
                   "verdict", "client µs/req wire", "client µs/req shm", "CPU ratio",
                   "95% CI"],
                  [[r["model"], r["protocol"], r["mode"],
                    fmt_load(r["load_kind"], r["load_level"]),
                    f"{_bytes(r['mean_bytes_sent_a'])} → {_bytes(r['mean_bytes_sent_b'])}",
                    f"{_bytes(r['mean_bytes_received_a'])} → "
                    f"{_bytes(r['mean_bytes_received_b'])}",
                    *_pair_cells(r), fmt_num(r["cpu_a_us"], 0),
                    fmt_num(r["cpu_b_us"], 0), fmt_ratio(r["cpu_ratio"]),
                    fmt_ci(r["cpu_ratio_lo"], r["cpu_ratio_hi"], fmt_ratio)] for r in rows])}


def _resources_section(d: dict, loads: dict[str, str]) -> dict:
    """Server resources from Triton's metrics endpoint; GPU columns only where GPUs report."""
    rows = d["resources"]
    paragraphs = [
        "Read from Triton's Prometheus endpoint at each statistics sample, over the steady "
        "window. Utilisation is a share of the whole host (CPU) or the mean GPU; memory is the "
        "peak; energy and inferences are increases between the window's first and last "
        "scrape, so joules per inference is measured over one interval. Pending: requests "
        "waiting in Triton's schedulers."]
    gpu, energy = _has_gpu_and_energy(rows + d["probe_resources"])
    if (rows or d["probe_resources"]) and not gpu:
        paragraphs.append("No GPU metric in these runs (the server reports no nv_gpu_ "
                          "family: a CPU-only server, or --allow-gpu-metrics=false); the "
                          "host's CPU utilisation and memory stand in.")
    elif rows and not energy:
        paragraphs.append("No energy counter (nv_energy_consumption) in these runs: no "
                          "joules per inference.")
    paragraphs += [f"Run {run_id}: metrics not read ({note})."
                   for run_id, note in sorted(d["unread_metrics"].items())]
    table = [[r["run_id"], loads.get(r["run_id"], ""), *_resource_cells(r, gpu, energy),
              r["metrics_window"]] for r in rows]
    section = {"title": "Server resources", "paragraphs": paragraphs,
               "table": ((["run", "load", *_resource_headers(gpu, energy), "window"], table)
                         if table else None)}
    if d["pending"]:
        section["images"] = ["pending_vs_queue"]
    return section


def _probe_resources_section(d: dict) -> dict | None:
    """The capacity probes' resources: utilisation and energy against offered load."""
    by_dir = {r["run_id"]: r for r in d["probe_resources"]}
    probes = [p for p in d["capacity"]["probes"] if p["run_dir"] in by_dir]
    if not probes:
        return None
    gpu, energy = _has_gpu_and_energy(list(by_dir.values()))
    return {"title": "Server resources of the capacity probes", "paragraphs": [
        "Each probe's steady window, as in Server resources: how utilisation, memory and "
        "energy per inference grow with the offered rate, per configuration."],
        "table": (["search", "offered req/s", *_resource_headers(gpu, energy)],
                  [[p["label"], fmt_rps(p["offered_rps"]),
                    *_resource_cells(by_dir[p["run_dir"]], gpu, energy)] for p in probes])}


def _resources_at_knee(d: dict) -> tuple[list[str], list[list[str]]]:
    """Per search with a knee: the resources of the probe the knee was measured at."""
    by_dir = {r["run_id"]: r for r in d["probe_resources"]}
    gpu, energy = _has_gpu_and_energy(list(by_dir.values()))
    rows = []
    for k in d["capacity"]["searches"]:
        at = k.get("at_rps")
        probe = next((p for p in d["capacity"]["probes"] if p["label"] == k["label"]
                      and at is not None and abs(p["offered_rps"] - at) <= 0.005 * at
                      and p["run_dir"] in by_dir), None)
        if probe is not None:
            rows.append([k["label"], fmt_rps(k["capacity_rps"]), fmt_rps(at),
                         *_resource_cells(by_dir[probe["run_dir"]], gpu, energy)])
    return ["search", "capacity req/s", "measured at req/s", *_resource_headers(gpu, energy)], rows


def _capacity_section(d: dict) -> dict:
    p, cap = d["parameters"], d["capacity"]
    paras: list[str] = []
    table = None
    if p.get("slo_p95_ms") is None:
        paras.append("No P95 SLO was given (`--slo-p95-ms`), so no maximum load is computed. "
                     "The curves below are still the measured throughput–latency trade-off.")
    else:
        paras.append(
            f"Objective: P95 ≤ {p['slo_p95_ms']:g} ms and error rate ≤ "
            f"{fmt_pct(p['max_error_rate'])}. Load levels are walked upwards; the maximum is "
            "the best throughput before the first level that breaks the objective. Never "
            "extrapolated.")
        replicas = {(r["model"], r["protocol"], r["mode"], r["load_kind"]): r
                    for r in cap["replicas"]}
        if cap["replicas"]:
            paras.append(
                f"Replicas for a target of {p['target_rps']:g} req/s with "
                f"{p['headroom']:.0%} headroom = ceil(target ÷ (max ok req/s × "
                "(1 − headroom))), written out per row.")
        paras.extend(f"{lim['model']} ({lim['protocol']}, {lim['mode']}): {lim['explanation']}"
                     for lim in cap["limits"] if lim["status"] != "found")
        headers = ["model", "protocol", "mode", "status", "max ok req/s", "at load",
                   "P95 there ms", "errors there", "first violation"]
        if cap["replicas"]:
            headers += ["replicas", "arithmetic"]
        rows = []
        for lim in cap["limits"]:
            violation = ("none" if not lim["violation"] else
                         f"{fmt_load(lim['load_kind'], lim['first_violation_level'])}: "
                         f"{lim['violation']}")
            row = [lim["model"], lim["protocol"], lim["mode"], lim["status"],
                   fmt_rps(lim["max_rps"]),
                   "n/a" if _na(lim["at_load_level"]) else
                   fmt_load(lim["load_kind"], lim["at_load_level"]),
                   fmt_ms(lim["p95_at_us"]), fmt_pct(lim["error_rate_at"]), violation]
            if cap["replicas"]:
                rep = replicas.get((lim["model"], lim["protocol"], lim["mode"],
                                    lim["load_kind"]))
                if rep is None or rep["replicas"] is None:
                    row += ["n/a", rep["note"] if rep else ""]
                else:
                    row += [("≤ " if rep["note"] else "") + str(rep["replicas"]),
                            rep["arithmetic"]]
            rows.append(row)
        table = (headers, rows)
    return {"title": "Capacity", "paragraphs": paras, "table": table,
            "images": ["p95_vs_throughput"]}


# ---------------------------------------------------------------------------------------------
# The answer: what the report opens with


def _whole(x: float | None) -> str:
    return "n/a" if _na(x) else f"{x:.0f}"


def _interval(lo: float | None, hi: float | None, fmt=_whole) -> str:
    if _na(lo):
        return "n/a"
    return f"{fmt(lo)}–{fmt(hi)}" if not _na(hi) else f"≥ {fmt(lo)}"


def _capacity_text(k: dict | None) -> str:
    if not k:
        return "not searched"
    if k["capacity_rps"] is None:
        return k["status"]
    prefix = "≥ " if k["status"] in ("above range", "generator-bound") else ""
    return f"{prefix}{k['capacity_rps']:.0f}"


def _checked_text(after: dict | None, rec: dict | None) -> str:
    if not after:
        return "not checked" if rec else "n/a"
    span = _interval(after.get("capacity_lo_rps"), after.get("capacity_hi_rps"))
    return f"{_capacity_text(after)} [{span}]"


def _gain_text(r: dict | None) -> str:
    if not r or r["ratio"] is None:
        return "n/a"
    return (f"{r['ratio']:.2f}× [{_interval(r['lo'], r['hi'], fmt_num)}] "
            f"{_verdict_text(r['verdict'])}")


def _config_text(c: dict | None) -> str:
    if not c:
        return "n/a"
    preferred = c.get("preferred_batch_sizes") or []
    return (f"delay {c.get('max_queue_delay_us')} µs, "
            f"batch [{', '.join(map(str, preferred)) or 'any'}]")


def _binding_lines(models: list[dict]) -> list[str]:
    """Per model and protocol searched under several objectives: the one that binds."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for m in models:
        if (m["capacity"] or {}).get("capacity_rps") is not None:
            groups.setdefault((m["model"], m["protocol"]), []).append(m)
    return [f"{model} ({protocol}): {low['objective']} binds, at "
            f"{low['capacity']['capacity_rps']:.0f} req/s."
            for (model, protocol), rows in sorted(groups.items()) if len(rows) > 1
            for low in [min(rows, key=lambda m: m["capacity"]["capacity_rps"])]]


def answer_sections(d: dict) -> list[dict]:
    """The sections the report opens with, one per planner's question."""
    a = d["answer"]
    slo = a["slo_p95_ms"]
    out: list[dict] = []
    if a["models"]:
        rows = []
        for m in a["models"]:
            cap, off, rec = m["capacity"] or {}, m["batching_off"], m["recommended"]
            after = (rec or {}).get("capacity")
            rows.append([
                m["model"], m["protocol"], m["objective"], _capacity_text(cap),
                _interval(cap.get("capacity_lo_rps"), cap.get("capacity_hi_rps")),
                fmt_num(cap.get("p95_ms"), 1), fmt_pct(cap.get("goodput")),
                _capacity_text(off), _gain_text(m["batching_gain"]),
                _checked_text(after, rec),
                (f"{m['replicas']['replicas']}" if m["replicas"] else "n/a")])
        paras = [f"Capacity: the highest Poisson open-loop rate whose P95, counted from the "
                 f"scheduled send time, stays within its objective with errors ≤ "
                 f"{fmt_pct(a['max_error_rate'])} (95% interval). Goodput: requests within the "
                 "SLO at the highest rate that passed. Batching off: the model's _nobatch "
                 "twin. Checked: the recommended config below, measured. A generative "
                 "model's objective is its TTFT or inter-token-latency P95 (its P95 column), "
                 "one search each: the lower capacity binds."]
        after_table = []
        if a["target_rps"]:
            after_table.append(
                f"Replicas for {a['target_rps']:g} req/s with {a['headroom']:.0%} headroom, "
                "from the current config (the checked one where it was significantly better): "
                + "; ".join(f"{m['model']}: {m['replicas']['arithmetic']}"
                            for m in a["models"] if m["replicas"]) + ".")
        after_table += _binding_lines(a["models"])
        classic_only = all(m["objective"].startswith("P95 ") for m in a["models"])
        title = (f"Capacity within P95 ≤ {slo:g} ms" if classic_only and slo is not None
                 else "Capacity within the SLOs")
        out.append({"id": "capacity", "title": title,
                    "paragraphs": paras, "after_table": after_table,
                    "table": (["model", "protocol", "objective", "capacity req/s",
                               "95% interval", "P95 ms", "goodput", "batching off", "on ÷ off",
                               "checked config req/s", "replicas"], rows)})
        out.append({"id": "knee", "title": "The knee, per model", "paragraphs": [
            "P95 (with its 95% interval) against the offered rate for every probe of every "
            "search; the red line is the SLO, ◆ the capacity, the band its interval. Batching "
            "off is the _nobatch twin; the recommended config is the check's search."],
            "table": None, "images": ["capacity_curves"]})
    recs = [m for m in a["models"] if m["recommended"]]
    if recs:
        rows = [[m["model"], _config_text(m["recommended"]["current"]),
                 _config_text(m["recommended"]["config"]),
                 fmt_rps(m["recommended"]["predicted_capacity_rps"]),
                 _capacity_text(m["capacity"]),
                 _capacity_text(m["recommended"]["capacity"]) if m["recommended"]["checked"]
                 else "not checked", _gain_text(m["recommended"]["change"])] for m in recs]
        out.append({"id": "batching", "title": "Batching: the config to set",
                    "paragraphs": [
                        "From each model's measured batch formation (Triton's per-batch-size "
                        "statistics, one histogram per load level below), a cost fit predicts "
                        "the largest batch the SLO allows and the queue delay worth waiting. "
                        + ("The embedded server was then restarted with it and the capacity "
                           "searched again. " if any(m["recommended"]["checked"] for m in recs)
                           else "Not checked (a --url server, or --no-check): predictions "
                           "only. ") + "The arithmetic, per model, follows the table."],
                    "after_table": [f"{m['model']}: {m['recommended']['reasoning']}"
                                    for m in recs],
                    "table": (["model", "current", "recommended", "predicted req/s",
                               "capacity before", "capacity after", "after ÷ before"], rows),
                    "images": ["batch_formation"]})
    if a["sync_async"]:
        rows = [[r["framing"], r["protocol"], r["sync"], r["async"],
                 f"{fmt_rps(r['throughput_sync'])} → {fmt_rps(r['throughput_async'])}",
                 fmt_ratio(r["throughput_ratio"]),
                 _interval(r["throughput_lo"], r["throughput_hi"], fmt_num),
                 _verdict_text(r["throughput_verdict"]), fmt_ratio(r["p95_ratio"]),
                 _interval(r["p95_lo"], r["p95_hi"], fmt_num), _verdict_text(r["p95_verdict"]),
                 fmt_ratio(r["predicted_ratio"]), r["regime"] or "n/a", str(r["rounds"])]
                for r in a["sync_async"]]
        out.append({"id": "sync-async", "title": "Sync vs async, in both framings",
                    "paragraphs": [
                        "Equal in flight: async with fewer users keeps the same requests in "
                        "flight, so the server sees the same load and the ratio is about 1 by "
                        "construction. Equal users: the same users switch from blocking calls "
                        "to k requests in flight each, the framing of the claim \"async gives "
                        "3–5× the throughput and −40% P95\". Intervals combine the spread "
                        "between interleaved rounds with the bootstrap within runs.",
                        *a["littles_law"], a["claim"]["summary"]],
                    "table": (["framing", "protocol", "sync", "async", "req/s",
                               "req/s ratio", "req/s 95% interval", "req/s verdict",
                               "P95 ratio", "P95 95% interval", "P95 verdict",
                               "Little's law", "regime", "rounds"], rows),
                    "images": ["sync_async_ratios"]})
    at_knee = _time_at_knee(d)
    if at_knee:
        out.append({"id": "time", "title": "Where the time goes, at the knee",
                    "paragraphs": ["At the highest rate within the SLO: Triton's mean queue and "
                                   "compute time per request against the P95 there. A large "
                                   "queue share means requests wait for a batch or an instance; "
                                   "a large remainder is the front end, the network and the "
                                   "client."],
                    "table": (["model", "rate req/s", "P95 ms", "mean queue ms",
                               "mean compute ms", "queue share of P95", "mean batch"], at_knee),
                    "images": ["time_at_knee"]})
    headers, at_knee_rows = _resources_at_knee(d)
    if at_knee_rows:
        out.append({"id": "resources", "title": "What the server used at the knee",
                    "paragraphs": ["The probe each knee was measured at, from Triton's "
                                   "metrics endpoint: utilisation, memory and, where the GPUs "
                                   "count it, energy per inference at that capacity. GPU "
                                   "columns appear only when the server reports GPUs."],
                    "table": (headers, at_knee_rows)})
    invalid = a["invalid"]
    out.append({"id": "validity", "title": "What could not be trusted",
                "paragraphs": (["Every run and probe was valid: the generator kept up, the "
                                "schedule held, the server did not fail requests, and every "
                                "window was stable."] if not invalid else
                               [f"{len(invalid)} run(s) or probe(s) are invalid; no headline "
                                "number above rests on them."]),
                "table": (["what", "why"], [[i["what"], i["reasons"]] for i in invalid])
                if invalid else None})
    return out


def _time_at_knee(d: dict) -> list[list[str]]:
    rows = []
    by_model = {m["model"]: m for m in d["answer"]["models"]}
    for rec in d["recommendations"]:
        model = by_model.get(rec["model"])
        at = ((model or {}).get("capacity") or {}).get("at_rps")
        levels = [f for f in rec["formation"] if at is not None
                  and abs(f["offered_rps"] - at) <= 0.005 * at]
        if not levels:
            continue
        f = levels[0]
        rows.append([rec["model"], fmt_rps(f["offered_rps"]), fmt_ms(f["p95_us"]),
                     fmt_ms(f["queue_us"]), fmt_ms(f["compute_us"]),
                     fmt_pct(f["queue_share_of_p95"]), fmt_num(f["mean_batch"])])
    return rows


# ---------------------------------------------------------------------------------------------
# Renderers


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """Render a Markdown table."""
    out = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    out.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows)
    return "\n".join(out)


def render_markdown(data: dict) -> str:
    """Render the report as Markdown (charts are in the HTML report)."""
    out = ["# tritonload capacity report", "", f"Generated {data['generated_at']}.", ""]
    for sec in answer_sections(data):
        out += [f"## {sec['title']}", ""]
        out += [line for para in sec["paragraphs"] for line in (para, "")]
        if sec.get("table") and sec["table"][1]:
            out += [markdown_table(*sec["table"]), ""]
        out += [line for para in sec.get("after_table", []) for line in (para, "")]
    out += ["# Details", "", "## Summary", ""]
    out.extend(f"- {line}" for line in data["headline"])
    for sec in _sections(data):
        out += ["", f"## {sec['title']}", ""]
        for para in sec["paragraphs"]:
            out += [para, ""]
        table = sec.get("table")
        if table and table[1]:
            out += [markdown_table(*table), ""]
        elif table is not None:
            out += ["No data.", ""]
    return "\n".join(out).rstrip() + "\n"


def _html_inline(text: str) -> str:
    escaped = html.escape(text)
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td class='{_cell_class(c)}'>{html.escape(c)}</td>" for c in row)
        + "</tr>" for row in rows)
    return (f"<div class='scroll'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _cell_class(text: str) -> str:
    cls = {"better": "good", "worse": "bad", NOT_SIGNIFICANT: "ns", "confirmed": "good",
           "not confirmed": "bad", "exceeded": "good"}.get(text, "")
    numeric = text[:1].isdigit() or text[:1] in "[-+≤" or text == "n/a"
    return f"{cls} {'' if numeric else 't'}".strip()


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;
max-width:1180px;color:#1d2330;line-height:1.45;padding:0 16px}
h1{font-size:26px;margin-bottom:4px}h2{font-size:20px;margin-top:32px;border-bottom:1px solid
#d7dbe3;padding-bottom:4px}.meta{color:#667}
.summary{background:#f3f6fb;border:1px solid #d7dbe3;border-radius:6px;padding:8px 16px}
.summary li{margin:4px 0}.warn{color:#a33}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}
th,td{border:1px solid #d7dbe3;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#eef1f6}td:first-child,th:first-child{text-align:left}
td.t{text-align:left;white-space:normal;min-width:60px}
.scroll{overflow-x:auto}td.good{color:#17733a;font-weight:600}td.bad{color:#b3261e;
font-weight:600}td.ns{color:#777}img{max-width:100%;margin:8px 0;border:1px solid #eee}
code{background:#f0f0f0;padding:0 3px;border-radius:3px}
#answer h2{margin-top:20px}details{margin:6px 0;border:1px solid #d7dbe3;border-radius:6px;
padding:4px 12px}summary{cursor:pointer;font-weight:600;font-size:16px}
h2.details{margin-top:40px}
"""


def _html_section(sec: dict, images: dict[str, bytes | None], level: int) -> list[str]:
    body = [f"<h{level}>{html.escape(sec['title'])}</h{level}>"]
    body += [f"<p>{_html_inline(p)}</p>" for p in sec["paragraphs"]]
    table = sec.get("table")
    if table and table[1]:
        body.append(_html_table(*table))
    elif table is not None:
        body.append("<p><em>No data.</em></p>")
    body += [f"<p>{_html_inline(p)}</p>" for p in sec.get("after_table", [])]
    for key in sec.get("images", []):
        png = images.get(key)
        if png:
            b64 = base64.b64encode(png).decode("ascii")
            body.append(f"<img alt='{key}' src='data:image/png;base64,{b64}'>")
    return body


def render_html(data: dict, images: dict[str, bytes | None]) -> str:
    """Render the report as one self-contained HTML page (PNG charts embedded as base64).

    It opens with the answer (capacity per model, the batching config, sync vs async, where
    the time goes, validity); every other section follows closed, in ``<details>``.
    """
    body = ["<h1>tritonload capacity report</h1>",
            f"<p class='meta'>Generated {html.escape(data['generated_at'])} · "
            f"{len(data['runs'])} run(s), {len(data['capacity']['searches'])} capacity "
            "search(es)</p>", "<section id='answer'>"]
    for sec in answer_sections(data):
        body.append(f"<div class='block' id='{sec['id']}'>")
        body += _html_section(sec, images, 2)
        body.append("</div>")
    body.append("</section><h2 class='details'>Details</h2>")
    summary = {"title": "Summary", "paragraphs": [], "table": None}
    details = [summary, *_sections(data)]
    for sec in details:
        body.append(f"<details><summary>{html.escape(sec['title'])}</summary>")
        if sec is summary:
            body.append("<div class='summary'><ul>" + "".join(
                f"<li class='{'warn' if line.startswith('Warning') else ''}'>"
                f"{_html_inline(line)}</li>" for line in data["headline"]) + "</ul></div>")
        body += _html_section(sec, images, 3)[1:]
        body.append("</details>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<title>tritonload capacity report</title>"
            f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def render_images(analysis: Analysis, data: dict) -> dict[str, bytes | None]:
    """Draw every chart of the report (``data``: its `report_data`, for the answer's rows)."""
    slo = analysis.params.get("slo_p95_ms")
    formation = {r["model"]: pd.DataFrame(r["formation"]) for r in analysis.recommendations}
    return {
        "capacity_curves": plots.capacity_curves(analysis.probes, analysis.knees,
                                                 slo * 1000.0 if slo else None),
        "batch_formation": plots.batch_formation(formation),
        "time_at_knee": plots.time_at_knee(_time_at_knee(data)),
        "sync_async_ratios": plots.sync_async_ratios(data["answer"]["sync_async"]),
        "throughput_vs_load": plots.throughput_vs_load(analysis.curves),
        "p95_vs_throughput": plots.p95_vs_throughput(
            analysis.curves, slo * 1000.0 if slo else None, analysis.limits),
        "latency_cdf": plots.latency_cdf(analysis.cdf),
        "tokens_vs_itl": plots.tokens_vs_itl(analysis.generations),
        "generation_latency_vs_load": plots.generation_latency_vs_load(analysis.generations),
        "batch_histograms": plots.batch_histograms(analysis.batch_hist),
        "time_breakdown": plots.time_breakdown(analysis.breakdown),
        "outage_timeline": plots.outage_timeline(analysis.timeline, analysis.outages),
        "pending_vs_queue": plots.pending_vs_queue(analysis.pending),
    }


def write_report(analysis: Analysis, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``out_dir``.

    Args:
        analysis: :func:`analysis.pipeline.analyze`.
        out_dir: output directory (created if needed).

    Returns:
        ``{"json": path, "md": path, "html": path}``.

    Raises:
        UsageError: the directory cannot be created or written.

    """
    out = Path(out_dir)
    data = report_data(analysis)
    images = render_images(analysis, data)
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths["json"].write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
        paths["md"].write_text(render_markdown(data))
        paths["html"].write_text(render_html(data, images))
    except OSError as exc:
        raise UsageError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    log.info("report written to %s", out)
    return paths


def compare_markdown(table: pd.DataFrame, label_a: str, label_b: str) -> str:
    """Render :func:`analysis.compare.compare_runs` as a Markdown table plus a verdict line."""
    if table.empty:
        return f"No group of {label_a} matches a group of {label_b}.\n"
    rows = []
    for r in table.to_dict("records"):
        if r["kind"] == "ratio":
            fmt = fmt_rps if r["metric"] == "throughput_rps" else fmt_ms
            change = "n/a" if _na(r["change"]) else f"{r['change']:+.1%}"
            ci = ("n/a" if _na(r["change_lo"]) else
                  f"[{r['change_lo']:+.1%}, {r['change_hi']:+.1%}]")
        else:
            fmt = fmt_pct
            change = "n/a" if _na(r["change"]) else f"{r['change'] * 100:+.2f} pp"
            ci = ("n/a" if _na(r["change_lo"]) else
                  f"[{r['change_lo'] * 100:+.2f}, {r['change_hi'] * 100:+.2f}] pp")
        metric = {"throughput_rps": "ok req/s", "p50_us": "P50 ms", "p95_us": "P95 ms",
                  "p99_us": "P99 ms", "error_rate": "error rate"}[r["metric"]]
        flag = {IMPROVEMENT: "**improvement**", REGRESSION: "**REGRESSION**"}.get(
            r["verdict"], r["verdict"])
        rows.append([r["model"], r["protocol"], r["mode"],
                     fmt_load(r["load_kind"], r["load_level"]), metric, fmt(r["a"]),
                     fmt(r["b"]), change, ci, flag])
    text = markdown_table(["model", "protocol", "mode", "load", "metric", f"A ({label_a})",
                           f"B ({label_b})", "change", "95% CI", "verdict"], rows)
    n_reg = int((table["verdict"] == REGRESSION).sum())
    n_imp = int((table["verdict"] == IMPROVEMENT).sum())
    text += (f"\n\n{n_reg} significant regression(s), {n_imp} significant improvement(s); "
             "the rest are not significant at 95%.\n")
    if not table["load_matched"].all():
        text += "Note: the runs have different load levels; groups matched without it.\n"
    return text
