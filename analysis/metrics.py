"""Pure metrics over loaded runs: DataFrame in, DataFrame out, nothing drawn or written.

Groups are model × protocol × mode × load level, within one run (``run_id`` is part of every
group key, so repeated runs at one load level stay apart). When a run carries several models,
an extra group named :data:`ALL_MODELS` aggregates them per protocol × mode.

The steady window, the throughput and the percentile method are the ones every other
view of a run uses (`tritonload.core.numbers`); the bootstrap intervals around them are
documented in ``docs/capacity-planning.md`` and implemented here.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from tritonload.core.numbers import (
    WARMUP_CAP_S,
    WARMUP_FRACTION,
    completion_ns,
    normal_quantile,
    percentiles_us,
    steady_window,
    t_quantile,
    throughput_rps,
)

#: Columns that identify a group of requests.
GROUP_KEYS = ["run_id", "model", "protocol", "mode", "load_kind", "load_level"]
#: Name of the group that aggregates all models of a run.
ALL_MODELS = "(all models)"
#: Reported latency percentiles: column stem → percentile (numpy linear interpolation).
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99_9": 99.9, "max": 100.0}
#: Percentiles that get a bootstrap confidence interval.
BOOTSTRAP_PERCENTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0}
#: Confidence level of every interval.
CONFIDENCE = 0.95

#: Run attributes attached to every group (:func:`run_attributes`), to pair repetitions and
#: sync/async framings in :mod:`analysis.compare`.
RUN_ATTRIBUTES = ["cell", "rep", "framing", "users", "in_flight_per_user", "shared_memory",
                  "client_cpu_us_per_request"]

_NS = 1_000_000_000


def steady_windows(
    runs: pd.DataFrame,
    *,
    warmup_fraction: float = WARMUP_FRACTION,
    warmup_cap_s: float = WARMUP_CAP_S,
) -> pd.DataFrame:
    """Compute each run's steady window.

    The rule is `tritonload.core.numbers.steady_window`'s, the one every view of a run uses.

    Args:
        runs: ``RunSet.runs``.
        warmup_fraction: share of the load period dropped when ``warmup_s`` is 0.
        warmup_cap_s: maximum warm-up dropped by the fraction rule.

    Returns:
        One row per run: ``run_id``, ``window_start_ns``, ``window_end_ns``, ``duration_s``,
        ``warmup_dropped_s``, ``warmup_rule``, ``trimmed``.

    """
    rows = []
    for r in runs.itertuples(index=False):
        w = steady_window(r.started_ns, r.ended_ns, r.warmup_s, first_ns=r.records_first_ns,
                          last_ns=r.records_last_ns, warmup_fraction=warmup_fraction,
                          warmup_cap_s=warmup_cap_s)
        rows.append((r.run_id, w.start_ns, w.end_ns, w.duration_s, w.warmup_dropped_s, w.rule,
                     w.trimmed))
    return pd.DataFrame(
        rows,
        columns=["run_id", "window_start_ns", "window_end_ns", "duration_s",
                 "warmup_dropped_s", "warmup_rule", "trimmed"],
    )


def run_attributes(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run, what the comparisons pair on besides model, protocol, mode and load.

    Args:
        runs: ``RunSet.runs``; the tag columns (``cell``, ``rep``, ``framing``) may be absent.

    Returns:
        Indexed by ``run_id``: ``cell`` (the bench cell, the run id for an untagged run, so
        each untagged run is a cell of its own), ``rep`` (repetition, 1 when untagged),
        ``framing`` (``""`` when untagged), ``users`` and ``in_flight_per_user`` (floats, NaN
        when unknown), ``shared_memory`` (the tensors' transfer: ``"none"`` for the wire,
        ``"system"``) and ``client_cpu_us_per_request`` (the whole run's, NaN when unknown).

    """
    ids = runs["run_id"].astype(str)
    n = len(runs)

    def column(name: str, default: object) -> pd.Series:
        values = runs[name] if name in runs.columns else pd.Series([None] * n)
        return pd.Series(list(values), index=ids.to_numpy()).where(
            lambda v: v.notna(), default)

    cell = column("cell", None)
    out = pd.DataFrame({
        "cell": [c if c is not None else rid for c, rid in zip(cell, ids, strict=True)],
        "rep": column("rep", 1).astype(int).to_numpy(),
        "framing": column("framing", "").astype(str).to_numpy(),
        "users": pd.to_numeric(column("users", math.nan), errors="coerce").to_numpy(float),
        "in_flight_per_user": pd.to_numeric(column("max_in_flight", math.nan),
                                            errors="coerce").to_numpy(float),
        "shared_memory": column("shared_memory", "none").astype(str).to_numpy(),
        "client_cpu_us_per_request": pd.to_numeric(
            column("client_cpu_us_per_request", math.nan), errors="coerce").to_numpy(float),
    }, index=ids.to_numpy())
    out.index.name = "run_id"
    return out


def _window_arrays(records: pd.DataFrame, windows: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Return (in-window mask, ns since the window start) for every record.

    A record is in its run's window when its completion time (intended start + latency)
    falls in ``[window_start_ns, window_end_ns)``.
    """
    run_cat = records["run_id"].cat
    w = windows.set_index("run_id").reindex([str(c) for c in run_cat.categories])
    ws = w["window_start_ns"].fillna(0).to_numpy(np.int64)
    span = (w["window_end_ns"].fillna(0) - w["window_start_ns"].fillna(0)).to_numpy(np.int64)
    codes = run_cat.codes.to_numpy()
    rel = completion_ns(records["intended_start_ns"].to_numpy(np.int64),
                        records["latency_us"].to_numpy(np.float64))
    rel -= ws[codes]
    mask = rel >= 0
    mask &= rel < span[codes]
    return mask, rel


def steady_records(records: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """Keep the records that completed inside their run's steady window.

    A request belongs to the window of its completion time
    (``intended_start_ns + latency_us``), so throughput counts requests served in the window.
    """
    mask, _ = _window_arrays(records, windows)
    return records[mask]


def _group_codes(
    cats: Sequence[tuple[np.ndarray, list[str]]], mask: np.ndarray
) -> tuple[np.ndarray, list[tuple]]:
    """Dense group ids (``len(keys)`` for rows outside ``mask``) and the key of each id.

    Args:
        cats: ``(codes, categories)`` of each key column.
        mask: rows that belong to some group.

    """
    sizes = [max(len(c), 1) for _, c in cats]
    total = int(np.prod(sizes))
    combined = np.zeros(len(mask), dtype=np.int64)
    for (codes, _), size in zip(cats, sizes, strict=True):
        if (codes < 0).any():  # a null key (not allowed by the format): no group
            mask = mask & (codes >= 0)
        combined *= size
        combined += np.maximum(codes, 0)
    present = np.flatnonzero(np.bincount(combined[mask], minlength=total))
    dtype = np.int16 if len(present) < 2**15 - 1 else np.int32
    lookup = np.full(total, len(present), dtype=dtype)
    lookup[present] = np.arange(len(present), dtype=dtype)
    gid = lookup[combined]
    del combined
    gid[~mask] = len(present)
    keys = []
    for code in present:
        parts = []
        for (_, c), size in zip(reversed(cats), reversed(sizes), strict=True):
            parts.append(str(c[code % size]))
            code //= size
        keys.append(tuple(reversed(parts)))
    return gid, keys


def _rng(seed: int, key: Sequence[object]) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(map(str, key)).encode())])


def bootstrap_percentile(
    sorted_values: np.ndarray, q: float, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap replicates of ``numpy.percentile(values, q)`` (linear interpolation).

    Exact nonparametric bootstrap without materialising resamples: a resample of size n
    drawn with replacement from the sorted sample is ``x[floor(U * n)]`` for iid uniforms U,
    and the r-th order statistic of n uniforms follows Beta(r, n - r + 1); the next one is
    ``U_r + (1 - U_r) * Beta(1, n - r)``. So each replicate costs O(1) whatever n is.

    Args:
        sorted_values: the sample, sorted ascending.
        q: percentile in [0, 100].
        n_boot: number of replicates.
        rng: random generator.

    Returns:
        ``n_boot`` replicates (empty when the sample is empty).

    """
    x = np.asarray(sorted_values)
    n = len(x)
    if n == 0:
        return np.empty(0)
    if n == 1:
        return np.full(n_boot, float(x[0]))
    h = (n - 1) * q / 100.0
    lo = int(math.floor(h))
    frac = h - lo
    u1 = rng.beta(lo + 1, n - lo, n_boot)
    y1 = x[np.minimum((u1 * n).astype(np.int64), n - 1)]
    if frac == 0 or lo + 1 >= n:
        return y1.astype(np.float64)
    u2 = u1 + (1.0 - u1) * rng.beta(1, n - lo - 1, n_boot)
    y2 = x[np.minimum((u2 * n).astype(np.int64), n - 1)]
    return y1 + frac * (y2 - y1)


def small_sample_factor(k: int, level: float = CONFIDENCE) -> float:
    """Widening applied to bootstrap replicates of a mean of ``k`` values.

    The percentile bootstrap of a mean is too narrow for small ``k``: it uses the 1/k
    variance and normal quantiles. Scaling replicate deviations by
    ``sqrt(k / (k - 1)) × t(k - 1) / z`` gives the Student-t interval width; the factor is
    1.22 for k = 10, 1.03 for k = 60 and tends to 1.
    """
    if k < 2:
        return 1.0
    p = 1 - (1 - level) / 2
    return math.sqrt(k / (k - 1)) * t_quantile(p, k - 1) / normal_quantile(p)


def bootstrap_mean(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the mean of ``values`` (e.g. per-second request counts).

    Resampling is vectorised in chunks of at most four million draws. Replicates are
    widened around the sample mean by :func:`small_sample_factor`.
    """
    v = np.asarray(values, dtype=np.float64)
    k = len(v)
    if k == 0:
        return np.empty(0)
    rows = max(1, 4_000_000 // k)
    out = np.empty(n_boot)
    for i in range(0, n_boot, rows):
        b = min(rows, n_boot - i)
        out[i : i + b] = v[rng.integers(0, k, (b, k))].mean(axis=1)
    mean = v.mean()
    return mean + small_sample_factor(k) * (out - mean)


def interval(replicates: np.ndarray, level: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaNs when there are none)."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return (math.nan, math.nan)
    a = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(r, [a, 100.0 - a])
    return (float(lo), float(hi))


def request_metrics(
    records: pd.DataFrame,
    windows: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    cdf_points: int = 101,
    include_all_models: bool = True,
) -> pd.DataFrame:
    """Throughput, errors and exact latency percentiles per group, with bootstrap intervals.

    Only records that completed in the steady window count (see :func:`steady_windows`).
    Throughput is successful requests per second of window; its interval comes from
    bootstrapping the per-second counts of successful requests. Latency statistics are over
    successful requests; percentiles equal ``numpy.percentile`` of the raw ``latency_us``
    (linear interpolation); their intervals come from :func:`bootstrap_percentile`.

    Args:
        records: ``RunSet.records``.
        windows: output of :func:`steady_windows`.
        runs: ``RunSet.runs`` (for ``load_kind`` and ``load_level``).
        n_boot: bootstrap replicates per statistic.
        seed: base seed; each group draws from its own stream derived from its key.
        cdf_points: number of evenly spaced percentiles kept in ``cdf_us`` (0 for none).
        include_all_models: add an :data:`ALL_MODELS` group per run × protocol × mode when a
            run has more than one model.

    Returns:
        One row per group: the :data:`GROUP_KEYS`, ``requests``, ``ok``, ``errors``,
        ``error_rate`` (+ ``_lo``/``_hi``), ``duration_s``, ``throughput_rps``
        (+ ``_lo``/``_hi``), ``mean_latency_us``, ``<p>_us`` for each of
        :data:`PERCENTILES`, ``<p>_lo_us``/``<p>_hi_us`` for :data:`BOOTSTRAP_PERCENTILES`,
        ``mean_bytes_sent``, ``mean_bytes_received``, object columns ``boot_throughput``,
        ``boot_error_rate``, ``boot_<p>`` (replicates) and ``cdf_us`` (latency at
        ``cdf_points`` evenly spaced percentiles), and the run's :data:`RUN_ATTRIBUTES`
        (:func:`run_attributes`).

    """
    mask, rel = _window_arrays(records, windows)
    cats = {c: (records[c].cat.codes.to_numpy(), [str(x) for x in records[c].cat.categories])
            for c in ("run_id", "model", "protocol", "mode")}
    arrays = {
        "latency": records["latency_us"].to_numpy(np.float64),
        "ok": records["ok"].to_numpy(bool),
        "sent": records["bytes_sent"].to_numpy(),
        "received": records["bytes_received"].to_numpy(),
        "rel": rel,
    }
    w = windows.set_index("run_id")
    ctx = {"dur": w["duration_s"], "trimmed": w["trimmed"], "n_boot": n_boot, "seed": seed,
           "cdf_points": cdf_points}
    frames = [_metrics_for(cats, ["run_id", "model", "protocol", "mode"], mask, arrays, None,
                           ctx)]
    if include_all_models and len(frames[0]):
        n_models = frames[0].groupby("run_id")["model"].nunique()
        multi = set(n_models[n_models > 1].index)
        if multi:
            run_codes, run_names = cats["run_id"]
            in_multi = np.isin(run_codes, [i for i, r in enumerate(run_names) if r in multi])
            frames.append(_metrics_for(cats, ["run_id", "protocol", "mode"], mask & in_multi,
                                       arrays, ALL_MODELS, ctx))
    out = pd.concat(frames, ignore_index=True)
    level = runs.set_index("run_id")[["load_kind", "load_level"]]
    out["load_kind"] = out["run_id"].map(level["load_kind"])
    out["load_level"] = out["run_id"].map(level["load_level"]).astype(float)
    attrs = run_attributes(runs)
    for c in RUN_ATTRIBUTES:
        out[c] = out["run_id"].map(attrs[c])
    out["rep"] = out["rep"].astype(int)
    first = GROUP_KEYS
    return out[first + [c for c in out.columns if c not in first]].reset_index(drop=True)


def _metrics_for(
    cats: dict[str, tuple[np.ndarray, list[str]]],
    cols: list[str],
    mask: np.ndarray,
    arrays: dict[str, np.ndarray],
    model_name: str | None,
    ctx: dict,
) -> pd.DataFrame:
    """Metrics of the groups of ``cols`` among the rows of ``mask`` (full-length arrays)."""
    out_cols = ["run_id", "model", "protocol", "mode", *_metric_columns()]
    if not mask.any():
        return pd.DataFrame(columns=out_cols)
    gid, keys = _group_codes([cats[c] for c in cols], mask)
    ng = len(keys)
    ok = arrays["ok"]
    n_req = np.bincount(gid, minlength=ng + 1)[:ng]
    okg = np.where(ok, gid, ng).astype(gid.dtype)
    del gid
    n_ok = np.bincount(okg, minlength=ng + 1)[:ng]
    lat = arrays["latency"]
    lat_sum = np.bincount(okg, weights=lat, minlength=ng + 1)[:ng]
    sent = np.bincount(okg, weights=arrays["sent"], minlength=ng + 1)[:ng]
    recv = np.bincount(okg, weights=arrays["received"], minlength=ng + 1)[:ng]
    order = np.argsort(okg, kind="stable")  # successful rows of each group, contiguous
    del okg
    bounds = np.concatenate([[0], np.cumsum(n_ok)])
    rel = arrays["rel"]
    n_boot, seed, cdf_points = ctx["n_boot"], ctx["seed"], ctx["cdf_points"]
    probs = np.linspace(0.0, 100.0, cdf_points) if cdf_points else None

    rows = []
    for i, key in enumerate(keys):
        named = dict(zip(cols, key, strict=True))
        run_id = named["run_id"]
        model = model_name if model_name is not None else named["model"]
        full_key = (run_id, model, named["protocol"], named["mode"])
        rng = _rng(seed, full_key)
        idx = order[bounds[i] : bounds[i + 1]]
        values = np.sort(lat[idx])
        duration = float(ctx["dur"].get(run_id, math.nan))
        row: dict[str, object] = dict(zip(("run_id", "model", "protocol", "mode"), full_key,
                                          strict=True))
        requests, oks = int(n_req[i]), int(n_ok[i])
        errors = requests - oks
        row.update(requests=requests, ok=oks, errors=errors, duration_s=duration)
        # Errors.
        p_err = errors / requests if requests else math.nan
        boot_err = rng.binomial(requests, p_err, n_boot) / requests if requests else np.empty(0)
        row["error_rate"] = p_err
        row["error_rate_lo"], row["error_rate_hi"] = interval(boot_err)
        row["boot_error_rate"] = boot_err
        # Throughput.
        row["throughput_rps"] = throughput_rps(oks, duration)
        k = int(duration) if bool(ctx["trimmed"].get(run_id, False)) else 0
        if k >= 2:
            per_sec = np.bincount(rel[idx] // _NS, minlength=k)[:k]
            boot_tp = bootstrap_mean(per_sec, n_boot, rng)
        else:
            boot_tp = np.empty(0)
        row["throughput_lo"], row["throughput_hi"] = interval(boot_tp)
        row["boot_throughput"] = boot_tp
        # Latency.
        row["mean_latency_us"] = lat_sum[i] / oks if oks else math.nan
        pct = percentiles_us(values, list(PERCENTILES.values()))
        for name, v in zip(PERCENTILES, pct, strict=True):
            row[f"{name}_us"] = float(v)
        for name, q in BOOTSTRAP_PERCENTILES.items():
            boot = bootstrap_percentile(values, q, n_boot, rng)
            row[f"{name}_lo_us"], row[f"{name}_hi_us"] = interval(boot)
            row[f"boot_{name}"] = boot
        row["mean_bytes_sent"] = sent[i] / oks if oks else math.nan
        row["mean_bytes_received"] = recv[i] / oks if oks else math.nan
        row["cdf_us"] = (
            np.percentile(values, probs) if (probs is not None and oks) else np.empty(0)
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=out_cols)


def _metric_columns() -> list[str]:
    cols = ["requests", "ok", "errors", "duration_s", "error_rate", "error_rate_lo",
            "error_rate_hi", "boot_error_rate", "throughput_rps", "throughput_lo",
            "throughput_hi", "boot_throughput", "mean_latency_us"]
    cols += [f"{p}_us" for p in PERCENTILES]
    for p in BOOTSTRAP_PERCENTILES:
        cols += [f"{p}_lo_us", f"{p}_hi_us", f"boot_{p}"]
    return cols + ["mean_bytes_sent", "mean_bytes_received", "cdf_us"]


def error_breakdown(records: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """Failed requests in the steady window by kind.

    Returns:
        One row per run × model × protocol × mode × error kind: ``count`` and ``rate`` (share
        of all requests of that group), sorted by count descending.

    """
    mask, _ = _window_arrays(records, windows)
    keys = ["run_id", "model", "protocol", "mode"]
    sub = records.loc[mask, [*keys, "ok", "error_kind"]]
    totals = sub.groupby(keys, observed=True).size().rename("requests")
    bad = sub[~sub["ok"].to_numpy(bool)]
    counts = bad.groupby([*keys, "error_kind"], observed=True).size().rename("count")
    if counts.empty:
        return pd.DataFrame(columns=[*keys, "error_kind", "count", "rate"])
    out = counts.reset_index().merge(totals.reset_index(), on=keys)
    out["rate"] = out["count"] / out["requests"]
    for c in [*keys, "error_kind"]:
        out[c] = out[c].astype(str)
    out["error_kind"] = out["error_kind"].replace("", "unknown")
    return out.drop(columns="requests").sort_values("count", ascending=False,
                                                    ignore_index=True)


def _interval_in_window(frame: pd.DataFrame, windows: pd.DataFrame) -> np.ndarray:
    w = windows.set_index("run_id")
    run = frame["run_id"].astype(str)
    ws = run.map(w["window_start_ns"]).to_numpy(np.float64)
    we = run.map(w["window_end_ns"]).to_numpy(np.float64)
    mid = (frame["t_start_ns"].to_numpy(np.float64) + frame["t_end_ns"].to_numpy(np.float64)) / 2
    return (mid >= ws) & (mid < we)


def intervals_in_window(frame: pd.DataFrame, windows: pd.DataFrame) -> tuple[pd.DataFrame, set]:
    """Intervals whose midpoint is in the window; runs with none fall back to all intervals."""
    if frame.empty:
        return frame, set()
    inside = _interval_in_window(frame, windows)
    run = frame["run_id"].astype(str).to_numpy()
    runs_inside = set(run[inside])
    fallback = set(run) - runs_inside
    keep = inside | np.isin(run, list(fallback))
    return frame[keep], fallback


_PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


def server_metrics(
    server_stats: pd.DataFrame, windows: pd.DataFrame, *, include_all_models: bool = True
) -> pd.DataFrame:
    """Server-side means per run × model from Triton's statistics deltas.

    Intervals count when their midpoint lies in the steady window; a run with no such
    interval (intervals longer than the window) uses all of its intervals and says so in
    ``server_window``.

    Returns:
        One row per run × model: ``success_count``, ``fail_count``, ``inference_count``,
        ``execution_count``, ``<phase>_us`` (mean per request, for queue, compute_input,
        compute_infer, compute_output), ``server_request_us`` (their sum),
        ``mean_batch_size`` (Σinference ÷ Σexecution) and ``server_window``.

    """
    cols = ["run_id", "model", "success_count", "fail_count", "inference_count",
            "execution_count", *[f"{p}_us" for p in _PHASES], "server_request_us",
            "mean_batch_size", "server_window"]
    sel, fallback = intervals_in_window(server_stats, windows)
    if sel.empty:
        return pd.DataFrame(columns=cols)
    sums = [c for c in sel.columns if c.endswith(("_count", "_ns")) and c not in
            ("t_start_ns", "t_end_ns")]
    per_model = sel.groupby(["run_id", "model"], observed=True)[sums].sum().reset_index()
    frames = [per_model]
    if include_all_models:
        n_models = per_model.groupby("run_id", observed=True)["model"].nunique()
        multi = n_models[n_models > 1].index
        agg = per_model[per_model["run_id"].isin(multi)].groupby("run_id", observed=True)[
            sums].sum().reset_index()
        agg["model"] = ALL_MODELS
        frames.append(agg)
    out = pd.concat([f.astype({"run_id": str, "model": str}) for f in frames],
                    ignore_index=True)
    total = np.zeros(len(out))
    for p in _PHASES:
        cnt = out[f"{p}_count"].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(cnt > 0, out[f"{p}_ns"].to_numpy(np.float64) / cnt / 1000.0,
                            np.nan)
        out[f"{p}_us"] = mean
        total = total + mean
    out["server_request_us"] = total
    ex = out["execution_count"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["mean_batch_size"] = np.where(
            ex > 0, out["inference_count"].to_numpy(np.float64) / ex, np.nan)
    out["server_window"] = np.where(out["run_id"].isin(fallback), "whole run", "steady window")
    return out[cols]


def batch_histogram(server_batches: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """Batch-size histogram per run × model over the steady window.

    Returns:
        One row per run × model × batch size: ``executions``, ``share`` of the model's
        executions, ``inferences`` (executions × size) and ``mean_compute_infer_us`` per
        execution.

    """
    cols = ["run_id", "model", "batch_size", "executions", "share", "inferences",
            "mean_compute_infer_us"]
    sel, _ = intervals_in_window(server_batches, windows)
    if sel.empty:
        return pd.DataFrame(columns=cols)
    out = sel.groupby(["run_id", "model", "batch_size"], observed=True)[
        ["executions", "compute_infer_ns"]].sum().reset_index()
    out = out[out["executions"] > 0].astype({"run_id": str, "model": str})
    totals = out.groupby(["run_id", "model"])["executions"].transform("sum")
    out["share"] = out["executions"] / totals
    out["inferences"] = out["executions"] * out["batch_size"]
    out["mean_compute_infer_us"] = out["compute_infer_ns"] / out["executions"] / 1000.0
    return out[cols].sort_values(["run_id", "model", "batch_size"], ignore_index=True)


def time_breakdown(requests: pd.DataFrame, server: pd.DataFrame) -> pd.DataFrame:
    """Where the time goes: server phases vs client overhead, per group.

    ``client_overhead_us`` = client mean latency − server mean request time (queue +
    compute_input + compute_infer + compute_output). It covers serialisation, the network,
    the HTTP/gRPC front end and the client itself. Server statistics are per model, so when a
    run sent one model over several protocols or modes the server part is shared by those
    groups (``server_shared`` is true) and the overhead is only indicative.

    Args:
        requests: output of :func:`request_metrics`.
        server: output of :func:`server_metrics`.

    Returns:
        The group keys with ``mean_latency_us``, the four ``<phase>_us``,
        ``server_request_us``, ``client_overhead_us``, ``overhead_share`` and
        ``server_shared``; groups without server statistics are left out.

    """
    cols = [*GROUP_KEYS, "mean_latency_us", *[f"{p}_us" for p in _PHASES],
            "server_request_us", "client_overhead_us", "overhead_share", "server_shared"]
    if requests.empty or server.empty:
        return pd.DataFrame(columns=cols)
    left = requests[[*GROUP_KEYS, "mean_latency_us"]].astype({"run_id": str, "model": str})
    out = left.merge(server, on=["run_id", "model"], how="inner")
    out["client_overhead_us"] = out["mean_latency_us"] - out["server_request_us"]
    out["overhead_share"] = out["client_overhead_us"] / out["mean_latency_us"]
    out["server_shared"] = out.groupby(["run_id", "model"])["mode"].transform("size") > 1
    return out[cols]


def latency_cdf(requests: pd.DataFrame) -> pd.DataFrame:
    """Long-format latency CDF from the ``cdf_us`` column of :func:`request_metrics`.

    Returns:
        The group keys with ``percentile`` (0-100) and ``latency_us``.

    """
    rows = []
    for r in requests.itertuples(index=False):
        values = np.asarray(r.cdf_us)
        if values.size == 0:
            continue
        probs = np.linspace(0.0, 100.0, values.size)
        key = {k: getattr(r, k) for k in GROUP_KEYS}
        rows.append(pd.DataFrame({**key, "percentile": probs, "latency_us": values}))
    if not rows:
        return pd.DataFrame(columns=[*GROUP_KEYS, "percentile", "latency_us"])
    return pd.concat(rows, ignore_index=True)
