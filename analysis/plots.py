"""Charts as PNG bytes (matplotlib, Agg canvas, no pyplot global state).

Each function takes a DataFrame computed elsewhere and returns PNG bytes, or ``None`` when
there is nothing to draw. No computation beyond selecting and ordering rows.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .metrics import ALL_MODELS

_DPI = 100
_MAX_LINES = 20
_COLORS = [f"C{i}" for i in range(10)] + [
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
    "#3182bd", "#31a354", "#756bb1", "#e6550d", "#636363",
]


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    return buf.getvalue()


def _label(r: object, *cols: str) -> str:
    return " ".join(str(getattr(r, c)) for c in cols)


def _series(frame: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    groups = list(frame.groupby(keys, sort=True))
    # Keep the aggregate last and cap the count so legends stay readable.
    groups.sort(key=lambda kv: (kv[0][0] == ALL_MODELS, kv[0]))
    return groups[:_MAX_LINES]


def _style(i: int, key: tuple) -> dict:
    return {"color": _COLORS[i % len(_COLORS)],
            "linestyle": "--" if key[0] == ALL_MODELS else "-"}


def _legend_outside(ax: object) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def throughput_vs_load(curves: pd.DataFrame) -> bytes | None:
    """Throughput (with 95% interval bars) against load level, one panel per load kind."""
    if curves.empty:
        return None
    kinds = sorted(curves["load_kind"].unique())
    fig = Figure(figsize=(8.5 * len(kinds), 4.5), layout="constrained")
    for i, kind in enumerate(kinds):
        ax = fig.add_subplot(1, len(kinds), i + 1)
        part = curves[curves["load_kind"] == kind]
        for j, (key, g) in enumerate(_series(part, ["model", "protocol", "mode"])):
            g = g.sort_values("load_level")
            err = np.vstack([g["throughput_rps"] - g["throughput_lo"],
                             g["throughput_hi"] - g["throughput_rps"]])
            ax.errorbar(g["load_level"], g["throughput_rps"], yerr=np.nan_to_num(err),
                        marker="o", markersize=4, capsize=3, label=" ".join(key),
                        **_style(j, key))
        ax.set_xlabel("concurrency (users × max in flight)" if kind == "concurrency"
                      else "offered rate (req/s)")
        ax.set_ylabel("throughput (ok req/s)")
        ax.set_title(f"Throughput vs load ({kind})")
        ax.grid(alpha=0.3)
        _legend_outside(ax)
    return _png(fig)


def p95_vs_throughput(curves: pd.DataFrame, slo_p95_us: float | None = None,
                      limits: pd.DataFrame | None = None) -> bytes | None:
    """P95 against throughput (the knee), with the SLO line and the chosen capacity points."""
    if curves.empty:
        return None
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    drawn = set()
    for j, (key, g) in enumerate(_series(curves, ["model", "protocol", "mode"])):
        g = g.sort_values("load_level")
        ax.plot(g["throughput_rps"], g["p95_us"] / 1000.0, marker="o", markersize=4,
                label=" ".join(key), **_style(j, key))
        drawn.add(tuple(key))
    if slo_p95_us:
        ax.axhline(slo_p95_us / 1000.0, color="red", linewidth=1, label="P95 SLO")
    if limits is not None and not limits.empty:
        ok = limits[limits["max_rps"].notna()]
        # A Series mask: an empty list (every curve "SLO never met") would select columns.
        ok = ok[pd.Series([(m, p, md) in drawn for m, p, md in
                           zip(ok["model"], ok["protocol"], ok["mode"], strict=True)],
                          index=ok.index, dtype=bool)]
        ax.scatter(ok["max_rps"], ok["p95_at_us"] / 1000.0, s=110, facecolors="none",
                   edgecolors="black", zorder=5, label="max under SLO")
    ax.set_xlabel("throughput (ok req/s)")
    ax.set_ylabel("P95 latency (ms)")
    ax.set_yscale("log")
    ax.set_title("P95 vs throughput (the knee)")
    ax.grid(alpha=0.3, which="both")
    _legend_outside(ax)
    return _png(fig)


def latency_cdf(cdf: pd.DataFrame) -> bytes | None:
    """Latency CDF, one panel per mode, at the middle load level of that mode's sweep."""
    if cdf.empty:
        return None
    modes = sorted(cdf["mode"].unique())
    fig = Figure(figsize=(6.2 * len(modes), 4.2), layout="constrained")
    for i, mode in enumerate(modes):
        ax = fig.add_subplot(1, len(modes), i + 1)
        part = cdf[cdf["mode"] == mode]
        levels = sorted(part["load_level"].unique())
        level = levels[len(levels) // 2]
        part = part[part["load_level"] == level]
        for j, (key, g) in enumerate(_series(part, ["model", "protocol"])):
            ax.plot(g["latency_us"] / 1000.0, g["percentile"] / 100.0,
                    label=f"{key[0]} {key[1]}", **_style(j, key))
        unit = "in flight" if part["load_kind"].iloc[0] == "concurrency" else "req/s"
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"Latency CDF: {mode} @ {level:g} {unit}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def batch_histograms(hist: pd.DataFrame) -> bytes | None:
    """Share of executions per batch size, one panel per model (all runs together)."""
    if hist.empty:
        return None
    data = hist.groupby(["model", "batch_size"])["executions"].sum().reset_index()
    models = sorted(data["model"].unique())[:_MAX_LINES]
    cols = min(3, len(models))
    rows = int(np.ceil(len(models) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), layout="constrained")
    for i, model in enumerate(models):
        ax = fig.add_subplot(rows, cols, i + 1)
        g = data[data["model"] == model]
        sizes = g["batch_size"].astype(int).to_numpy()
        ax.bar(sizes, g["executions"] / g["executions"].sum(), color="tab:blue", width=0.8)
        ax.set_xlim(0.3, max(int(sizes.max()), 2) + 0.7)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("batch size")
        ax.set_ylabel("share of executions")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Batch-size histograms")
    return _png(fig)


def time_breakdown(breakdown: pd.DataFrame) -> bytes | None:
    """Stacked bars of mean queue, compute and client-overhead time per model × protocol × mode.

    Two panels: each curve's lowest load level (the intrinsic cost) and its highest (where
    queueing shows).
    """
    b = breakdown[breakdown["model"].astype(str) != ALL_MODELS]
    if b.empty:
        b = breakdown
    if b.empty:
        return None
    keys = ["model", "protocol", "mode"]
    b = b.sort_values([*keys, "load_level"])
    panels = [("lowest load", b.groupby(keys, sort=True).head(1)),
              ("highest load", b.groupby(keys, sort=True).tail(1))]
    n = min(len(panels[0][1]), 30)
    fig = Figure(figsize=(12, 0.32 * n + 1.8), layout="constrained")
    parts = [("queue", "queue_us", "tab:orange"),
             ("compute input", "compute_input_us", "tab:olive"),
             ("compute infer", "compute_infer_us", "tab:green"),
             ("compute output", "compute_output_us", "tab:cyan"),
             ("client overhead", "client_overhead_us", "tab:gray")]
    for i, (title, rows) in enumerate(panels):
        rows = rows.head(n)
        ax = fig.add_subplot(1, 2, i + 1)
        y = np.arange(len(rows))
        left = np.zeros(len(rows))
        for name, col, color in parts:
            v = np.nan_to_num(rows[col].to_numpy(float).clip(min=0) / 1000.0)
            ax.barh(y, v, left=left, label=name, color=color)
            left += v
        ax.set_yticks(y)
        ax.set_yticklabels([_label(r, *keys) + f" @{r.load_level:g}"
                            for r in rows.itertuples(index=False)], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("mean time per request (ms)")
        ax.set_title(f"Where the time goes: {title}")
        ax.grid(alpha=0.3, axis="x")
        if i == 1:
            _legend_outside(ax)
    return _png(fig)


def outage_timeline(timeline: pd.DataFrame, outages: pd.DataFrame) -> bytes | None:
    """Successful and failed requests per second, one panel per run, outages shaded."""
    if timeline.empty:
        return None
    run_ids = list(dict.fromkeys(timeline["run_id"].astype(str)))[:4]
    fig = Figure(figsize=(12, 2.4 * len(run_ids) + 0.6), layout="constrained")
    for i, run_id in enumerate(run_ids):
        ax = fig.add_subplot(len(run_ids), 1, i + 1)
        t = timeline[timeline["run_id"].astype(str) == run_id]
        ax.plot(t["t_s"], t["ok"], color="tab:green", label="ok req/s")
        ax.plot(t["t_s"], t["failed"], color="tab:red", label="failed req/s")
        for o in outages[outages["run_id"].astype(str) == run_id].itertuples(index=False):
            end = o.end_s if not pd.isna(o.end_s) else float(t["t_s"].max()) + 1
            ax.axvspan(o.start_s, end, color="tab:red", alpha=0.12,
                       label=f"unreachable ({o.kind})")
        ax.set_title(f"run {run_id}", fontsize=9)
        ax.set_ylabel("requests / s")
        ax.grid(alpha=0.3)
        if i == len(run_ids) - 1:
            ax.set_xlabel("seconds since the run started")
        _legend_outside(ax)
    return _png(fig)


def pending_vs_queue(pending: pd.DataFrame) -> bytes | None:
    """Requests pending in Triton's schedulers and the queue time per request, per run."""
    if pending.empty:
        return None
    run_ids = list(dict.fromkeys(pending["run_id"].astype(str)))[:4]
    fig = Figure(figsize=(12, 2.4 * len(run_ids) + 0.6), layout="constrained")
    for i, run_id in enumerate(run_ids):
        ax = fig.add_subplot(len(run_ids), 1, i + 1)
        t = pending[pending["run_id"].astype(str) == run_id]
        # Both are read at the instant each interval closes: points joined, not steps.
        ax.plot(t["t_s"], t["pending"], color="tab:purple", marker="o",
                label="pending requests (at the scrape)")
        ax.set_ylabel("pending")
        ax.set_ylim(bottom=0)
        queue = ax.twinx()
        queue.plot(t["t_s"], t["queue_us"] / 1000.0, color="tab:orange", marker=".",
                   label="queue ms / request (over the interval)")
        queue.set_ylabel("queue ms")
        queue.set_ylim(bottom=0)
        ax.set_title(f"run {run_id}", fontsize=9)
        ax.grid(alpha=0.3)
        if i == len(run_ids) - 1:
            ax.set_xlabel("seconds since the run started")
        lines = ax.get_legend_handles_labels()
        more = queue.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.06, 1.0), frameon=False)
    return _png(fig)


# ---------------------------------------------------------------------------------------------
# The answer's charts: one question each


def capacity_curves(probes: pd.DataFrame, knees: pd.DataFrame,
                    slo_p95_us: float | None) -> bytes | None:
    """Per model, P95 (95% interval bars) against the offered rate, the SLO and the knee.

    One panel per base model and protocol; batching on, off and the recommended config are
    separate series on a linear rate axis, so the knee reads as where a curve meets the line.
    """
    if probes.empty:
        return None
    panels = list(probes.groupby(["base_model", "protocol", "objective"], sort=True))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.6 * cols, 3.6 * rows), layout="constrained")
    styles = {("on", "current"): ("C0", "batching on"), ("off", "current"): ("C1", "batching off"),
              ("on", "recommended"): ("C2", "recommended config")}
    for i, ((model, protocol, objective), group) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        mine = knees[(knees["base_model"] == model) & (knees["protocol"] == protocol)
                     & (knees["objective"] == objective)]
        slo_us = float(mine["slo_p95_us"].iloc[0]) if len(mine) else slo_p95_us
        for (batching, config), g in group.groupby(["batching", "config"], sort=True):
            color, label = styles.get((batching, config), ("C7", f"{batching} {config}"))
            g = g[g["trusted"]].sort_values("offered_rps")
            shown = g[g["p95_us"] <= (slo_us or np.inf) * 4]  # keep the axis readable
            err = np.vstack([shown["p95_us"] - shown["p95_lo_us"],
                             shown["p95_hi_us"] - shown["p95_us"]]) / 1000.0
            ax.errorbar(shown["offered_rps"], shown["p95_us"] / 1000.0,
                        yerr=np.clip(np.nan_to_num(err), 0, None), marker="o", markersize=4,
                        capsize=3, color=color, label=label)
            k = mine[(mine["batching"] == batching) & (mine["config"] == config)]
            if len(k) and np.isfinite(k["capacity_rps"].iloc[0]) and slo_us:
                kn = k.iloc[0]
                ax.axvspan(kn["capacity_lo_rps"], kn["capacity_hi_rps"], color=color, alpha=0.12)
                ax.plot([kn["capacity_rps"]], [slo_us / 1000.0], marker="D", markersize=8,
                        color=color, markeredgecolor="black", zorder=5)
        if slo_us:
            ax.axhline(slo_us / 1000.0, color="red", linewidth=1, label=f"{objective} SLO")
        title = model if objective == "P95" else f"{model}, {objective}"
        ax.set_title(f"{title} ({protocol})", fontsize=10)
        ax.set_xlabel("offered rate (req/s)")
        ax.set_ylabel(f"{objective} (ms)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Latency–throughput per model: ◆ capacity within the SLO, band its 95% "
                 "interval", fontsize=10)
    return _png(fig)


def batch_formation(formation: dict[str, pd.DataFrame]) -> bytes | None:
    """Per batching model, the share of executions at each batch size, one line per load level."""
    frames = {m: f for m, f in formation.items() if f is not None and len(f)}
    if not frames:
        return None
    fig = Figure(figsize=(4.6 * len(frames), 3.4), layout="constrained")
    for i, (model, f) in enumerate(sorted(frames.items())):
        ax = fig.add_subplot(1, len(frames), i + 1)
        levels = sorted(f["offered_rps"].unique())
        for j, level in enumerate(levels):
            g = f[f["offered_rps"] == level].sort_values("batch_size")
            ax.plot(g["batch_size"], g["share"], marker=".", color=_COLORS[j % len(_COLORS)],
                    label=f"{level:.0f} req/s (mean {g['mean_batch'].iloc[0]:.1f})")
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("batch size")
        ax.set_ylabel("share of executions")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper right")
    fig.suptitle("How batches form at each load level (not pooled)", fontsize=10)
    return _png(fig)


def sync_async_ratios(rows: list[dict]) -> bytes | None:
    """Async ÷ sync throughput and P95 per framing, with intervals and Little's prediction."""
    rows = [r for r in rows if r["throughput_ratio"] is not None]
    if not rows:
        return None
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    labels = [f"{r['framing']}\n{r['protocol']}: {r['sync']} vs {r['async']}" for r in rows]
    y = np.arange(len(rows))
    for i, (key, title) in enumerate((("throughput", "throughput async ÷ sync"),
                                      ("p95", "P95 async ÷ sync"))):
        ax = fig.add_subplot(1, 2, i + 1)
        value = np.array([r[f"{key}_ratio"] for r in rows], dtype=float)
        lo = np.array([r[f"{key}_lo"] if r[f"{key}_lo"] is not None else np.nan for r in rows])
        hi = np.array([r[f"{key}_hi"] if r[f"{key}_hi"] is not None else np.nan for r in rows])
        err = np.clip(np.nan_to_num(np.vstack([value - lo, hi - value])), 0, None)
        ax.errorbar(value, y, xerr=err, fmt="o", capsize=4, color="C0", label="measured")
        if key == "throughput":
            pred = [r["predicted_ratio"] for r in rows]
            ax.scatter([p if p is not None else np.nan for p in pred], y, marker="x",
                       color="C3", zorder=5, label="Little's law")
        ax.axvline(1.0, color="grey", linewidth=1)
        ax.set_yticks(y, labels if i == 0 else [""] * len(rows), fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig)


def time_at_knee(rows: list[list[str]]) -> bytes | None:
    """Per model at its knee: mean queue, mean compute and the rest of the P95, stacked (ms).

    ``rows`` are the report's table rows (model, rate, P95, queue, compute, ...), already
    formatted; the numbers are read back from them so the chart shows exactly the table.
    """
    def ms(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return float("nan")

    rows = [r for r in rows if all(np.isfinite(ms(r[i])) for i in (2, 3, 4))]
    if not rows:
        return None
    fig = Figure(figsize=(7, 0.6 + 0.55 * len(rows)), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    queue = np.array([ms(r[3]) for r in rows])
    compute = np.array([ms(r[4]) for r in rows])
    rest = np.clip(np.array([ms(r[2]) for r in rows]) - queue - compute, 0, None)
    ax.barh(y, queue, color="C1", label="queue (mean)")
    ax.barh(y, compute, left=queue, color="C0", label="compute (mean)")
    ax.barh(y, rest, left=queue + compute, color="C7",
            label="rest of P95: waiting tail, front end, network, client")
    ax.set_yticks(y, [f"{r[0]} @ {r[1]} req/s" for r in rows], fontsize=8)
    ax.set_xlabel("ms")
    ax.set_title("Where the time goes at the knee (bar length = P95)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def tokens_vs_itl(generations: pd.DataFrame) -> bytes | None:
    """Output tokens per second against ITL P95, per load level: the curve LLM planners read."""
    if generations.empty:
        return None
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for j, (key, g) in enumerate(_series(generations, ["model", "protocol", "mode"])):
        g = g.sort_values("load_level")
        ax.plot(g["itl_p95_ms"], g["output_tokens_per_s"], marker="o", markersize=4,
                label=" ".join(key), **_style(j, key))
        for r in g.itertuples(index=False):
            ax.annotate(f"{r.load_level:g}", (r.itl_p95_ms, r.output_tokens_per_s),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("ITL P95 (ms)")
    ax.set_ylabel("output tokens/s")
    ax.set_title("Token throughput vs inter-token latency (labels: load level)")
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return _png(fig)


def generation_latency_vs_load(generations: pd.DataFrame) -> bytes | None:
    """TTFT, ITL and E2E P95 against load level, a panel each (the runs' mean per level)."""
    if generations.empty:
        return None
    panels = (("ttft_p95_ms", "TTFT P95 (ms)"), ("itl_p95_ms", "ITL P95 (ms)"),
              ("e2e_p95_ms", "E2E P95 (ms)"))
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    keys = ["model", "protocol", "mode", "load_kind", "load_level"]
    levels = generations.groupby(keys, as_index=False)[[c for c, _ in panels]].mean()
    for i, (column, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for j, (key, g) in enumerate(_series(levels, ["model", "protocol", "mode"])):
            g = g.sort_values("load_level")
            ax.plot(g["load_level"], g[column], marker="o", markersize=4,
                    label=" ".join(key), **_style(j, key))
        ax.set_xlabel("load level (in flight, or req/s offered)")
        ax.set_ylabel(label)
        ax.set_title(label.replace(" (ms)", "") + " vs load")
        ax.grid(alpha=0.3)
        if i == len(panels) - 1:
            _legend_outside(ax)
    return _png(fig)
