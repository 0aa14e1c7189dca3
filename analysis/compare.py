"""Comparisons with bootstrap intervals: sync vs async, gRPC vs HTTP, and run A vs run B.

All functions are pure: they take the output of :func:`analysis.metrics.request_metrics`
(whose ``boot_*`` columns hold the bootstrap replicates) and return DataFrames.

Significance rule: a ratio whose 95% interval contains 1, or a difference whose interval
contains 0, is "not significant" and is never called an improvement.

Repetitions: a bench runs every cell several times in interleaved rounds (run tags ``cell``
and ``rep``, attached to the metrics by :func:`analysis.metrics.run_attributes`). Cell
comparisons pair repetition r of A with repetition r of B (same round, close in time) and
combine the spread between rounds with the bootstrap within runs: :func:`round_ratio_interval`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tritonload.core.numbers import t_quantile

from .metrics import ALL_MODELS, CONFIDENCE, interval

NOT_SIGNIFICANT = "not significant"
NO_INTERVAL = "no interval"
IMPROVEMENT = "improvement"
REGRESSION = "regression"

#: The published claim checked by :func:`async_claim_check`.
ASYNC_CLAIM = "async gives 3-5x the throughput of sync and a 40% lower P95"
ASYNC_CLAIM_MIN_THROUGHPUT_RATIO = 3.0
ASYNC_CLAIM_MAX_THROUGHPUT_RATIO = 5.0
ASYNC_CLAIM_MAX_P95_RATIO = 0.6

#: Sync/async framings (the bench's ``Matrix.framings`` and run tag ``framing``).
EQUAL_IN_FLIGHT = "equal-in-flight"
EQUAL_USERS = "equal-users"
#: The framing the published claim was made in: same users, async k requests in flight each.
ASYNC_CLAIM_FRAMING = EQUAL_USERS


def ratio_interval(
    a: float, b: float, boot_a: np.ndarray, boot_b: np.ndarray, level: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Ratio ``b / a`` with a bootstrap interval from independent replicates of a and b.

    Returns:
        ``(ratio, lo, hi)``; the interval is NaN when either side has no replicates.

    """
    ratio = b / a if a and not math.isnan(a) else math.nan
    boot_a, boot_b = np.asarray(boot_a, float), np.asarray(boot_b, float)
    n = min(len(boot_a), len(boot_b))
    if n == 0:
        return ratio, math.nan, math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = boot_b[:n] / boot_a[:n]
    lo, hi = interval(reps, level)
    return ratio, lo, hi


def difference_interval(
    a: float, b: float, boot_a: np.ndarray, boot_b: np.ndarray, level: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Difference ``b - a`` with a bootstrap interval from independent replicates."""
    boot_a, boot_b = np.asarray(boot_a, float), np.asarray(boot_b, float)
    n = min(len(boot_a), len(boot_b))
    if n == 0:
        return b - a, math.nan, math.nan
    lo, hi = interval(boot_b[:n] - boot_a[:n], level)
    return b - a, lo, hi


@dataclass(frozen=True)
class RoundRatio:
    """A B ÷ A ratio over paired rounds (see :func:`round_ratio_interval`).

    Attributes:
        ratio: the point estimate: B ÷ A for one round, else the geometric mean of the
            per-round ratios.
        lo, hi: the interval the verdict uses: the union of the two below.
        within_lo, within_hi: bootstrap interval from the replicates within each run.
        between_lo, between_hi: Student-t interval over the per-round log ratios (NaN with
            fewer than two rounds).
        rounds: paired rounds used.
        round_ratios: B ÷ A of each round, in round order.

    """

    ratio: float
    lo: float
    hi: float
    within_lo: float
    within_hi: float
    between_lo: float
    between_hi: float
    rounds: int
    round_ratios: tuple[float, ...]


def round_ratio_interval(
    a: Sequence[float],
    b: Sequence[float],
    boot_a: Sequence[np.ndarray],
    boot_b: Sequence[np.ndarray],
    level: float = CONFIDENCE,
) -> RoundRatio:
    """Ratio B ÷ A over rounds paired by repetition, with a between- and a within-run interval.

    Round r holds repetition r of A and repetition r of B, which ran close in time, so a slow
    drift of the machine moves both and cancels in their ratio. With R rounds:

    * **between**: the per-round log ratios ``l_r = log(b_r / a_r)`` give a Student-t interval
      ``mean(l) ± t(1 - α/2, R - 1) · sd(l) / sqrt(R)`` (df = R − 1), exponentiated. It
      measures how much the ratio moves from one run to the next: the noise a single run's
      bootstrap cannot see (a run-to-run difference in the server's state, another tenant).
    * **within**: the bootstrap replicates of every run (independent streams) give replicates
      of the same estimator, ``exp(mean_r log(b*_r / a*_r))``, and their percentile interval.
      With one round this is exactly :func:`ratio_interval`.

    **The reported interval is the union of the two (the wider of each end).** Not the sum of
    their variances: the spread between rounds already contains the sampling noise within
    each run, so adding the within variance would count that noise twice. But with the two or
    three rounds a bench affords, the standard deviation between rounds is itself very
    uncertain and can come out small by luck (two rounds that agree by chance); the within-run
    bootstrap is then a floor that no honest interval can be narrower than. Taking the wider
    end of each keeps the interval from being overconfident in either case, and lets one
    side stand in when the other is missing (no throughput replicates in a window under 2 s;
    no spread with one round). With one round the result is exactly the bootstrap-only
    :func:`ratio_interval` of before.

    Args:
        a: the statistic of A in each round.
        b: the statistic of B in each round (same length, paired by round).
        boot_a: the bootstrap replicates of A's statistic in each round.
        boot_b: the bootstrap replicates of B's statistic in each round.
        level: confidence level.

    Returns:
        A :class:`RoundRatio`.

    """
    a = [float(x) for x in a]
    b = [float(x) for x in b]
    if len(a) != len(b) or len(boot_a) != len(a) or len(boot_b) != len(a):
        raise ValueError("a, b and their replicates must have one entry per round")
    rounds = len(a)
    nan = math.nan
    if rounds == 0:
        return RoundRatio(nan, nan, nan, nan, nan, nan, nan, 0, ())
    with np.errstate(divide="ignore", invalid="ignore"):
        per_round = tuple(float(y / x) if x and not math.isnan(x) else nan
                          for x, y in zip(a, b, strict=True))
    if rounds == 1:
        ratio, w_lo, w_hi = ratio_interval(a[0], b[0], boot_a[0], boot_b[0], level)
        return RoundRatio(ratio, w_lo, w_hi, w_lo, w_hi, nan, nan, 1, per_round)
    logs = np.log(np.asarray(per_round, float), where=np.asarray(per_round, float) > 0,
                  out=np.full(rounds, np.nan))
    logs = logs[np.isfinite(logs)]
    ratio = float(np.exp(logs.mean())) if len(logs) else nan
    b_lo = b_hi = nan
    if len(logs) >= 2:
        half = t_quantile(1 - (1 - level) / 2, len(logs) - 1) * logs.std(ddof=1) / math.sqrt(
            len(logs))
        b_lo, b_hi = float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))
    w_lo, w_hi = _within_interval(boot_a, boot_b, level)
    lo = min((x for x in (w_lo, b_lo) if not math.isnan(x)), default=nan)
    hi = max((x for x in (w_hi, b_hi) if not math.isnan(x)), default=nan)
    return RoundRatio(ratio, lo, hi, w_lo, w_hi, b_lo, b_hi, rounds, per_round)


def _within_interval(
    boot_a: Sequence[np.ndarray], boot_b: Sequence[np.ndarray], level: float
) -> tuple[float, float]:
    """Percentile interval of ``exp(mean_r log(b*_r / a*_r))`` (NaN when a round has none)."""
    arrays = [np.asarray(x, float) for x in (*boot_a, *boot_b)]
    n = min(len(x) for x in arrays)
    if n == 0:
        return math.nan, math.nan
    rounds = len(boot_a)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = sum(np.log(arrays[rounds + r][:n] / arrays[r][:n]) for r in range(rounds))
    return interval(np.exp(logs / rounds), level)


def round_ratio_columns(
    pairs: pd.DataFrame,
    keys: Sequence[str],
    extra: Callable[[pd.DataFrame], dict] | None = None,
) -> pd.DataFrame:
    """Collapse per-round pairs (:func:`pair_groups`) into one row per pair of cells.

    Args:
        pairs: output of :func:`pair_groups`, one row per round.
        keys: columns identifying a pair of cells (e.g. the ``on`` keys and ``cell_a``,
            ``cell_b``); their rows are its rounds.
        extra: more columns from a pair's rounds (a function of its rows).

    Returns:
        ``keys``, ``rounds``, ``run_a``, ``run_b`` (the run ids, comma-joined in round
        order), ``throughput_a``/``_b`` (mean over rounds), the :func:`ratio_fields` of
        ``throughput_ratio`` with ``throughput_verdict``, ``p95_a_us``/``p95_b_us`` (mean over
        rounds) and those of ``p95_ratio`` with ``p95_verdict``.

    """
    rows = []
    if pairs.empty:
        return pd.DataFrame(columns=[*keys, "rounds", "run_a", "run_b"])
    for key, g in pairs.groupby(list(keys), sort=False, dropna=False):
        if "rep" in g.columns:
            g = g.sort_values("rep", kind="stable")
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        row["rounds"] = len(g)
        row["run_a"] = ",".join(g["run_id_a"].astype(str))
        row["run_b"] = ",".join(g["run_id_b"].astype(str))
        row["throughput_a"] = float(g["throughput_rps_a"].mean())
        row["throughput_b"] = float(g["throughput_rps_b"].mean())
        tp = round_ratio_interval(g["throughput_rps_a"], g["throughput_rps_b"],
                                  list(g["boot_throughput_a"]), list(g["boot_throughput_b"]))
        row.update(ratio_fields("throughput_ratio", tp))
        row["throughput_round_ratios"] = list(tp.round_ratios)
        row["throughput_verdict"] = verdict(tp.lo, tp.hi, higher_is_better=True)
        row["p95_a_us"] = float(g["p95_us_a"].mean())
        row["p95_b_us"] = float(g["p95_us_b"].mean())
        p95 = round_ratio_interval(g["p95_us_a"], g["p95_us_b"], list(g["boot_p95_a"]),
                                   list(g["boot_p95_b"]))
        row.update(ratio_fields("p95_ratio", p95))
        row["p95_round_ratios"] = list(p95.round_ratios)
        row["p95_verdict"] = verdict(p95.lo, p95.hi, higher_is_better=False)
        if extra is not None:
            row.update(extra(g))
        rows.append(row)
    return pd.DataFrame(rows)


def ratio_fields(name: str, r: RoundRatio) -> dict[str, float]:
    """Return the columns of a :class:`RoundRatio` named after ``name``.

    ``name``, ``name_lo``/``_hi`` (combined), ``name_within_lo``/``_hi`` and
    ``name_between_lo``/``_hi``.
    """
    return {name: r.ratio, f"{name}_lo": r.lo, f"{name}_hi": r.hi,
            f"{name}_within_lo": r.within_lo, f"{name}_within_hi": r.within_hi,
            f"{name}_between_lo": r.between_lo, f"{name}_between_hi": r.between_hi}


def verdict(lo: float, hi: float, *, higher_is_better: bool, null: float = 1.0) -> str:
    """Label an interval of B relative to A.

    Args:
        lo: lower bound of the interval of the ratio (or difference).
        hi: upper bound.
        higher_is_better: whether a larger B is good (throughput) or bad (latency, errors).
        null: the value meaning "no change": 1 for ratios, 0 for differences.

    Returns:
        ``"improvement"``, ``"regression"``, ``"not significant"`` or ``"no interval"``.

    """
    if math.isnan(lo) or math.isnan(hi):
        return NO_INTERVAL
    if lo > null:
        return IMPROVEMENT if higher_is_better else REGRESSION
    if hi < null:
        return REGRESSION if higher_is_better else IMPROVEMENT
    return NOT_SIGNIFICANT


def pair_groups(
    metrics: pd.DataFrame, split: str, a_value: str, b_value: str, on: Sequence[str]
) -> pd.DataFrame:
    """Join groups whose ``split`` column is ``a_value`` with those where it is ``b_value``.

    When the metrics carry the repetition (``rep``, :func:`analysis.metrics.run_attributes`),
    groups are matched within a round too: repetition r of A with repetition r of B, never
    across rounds (untagged runs are all repetition 1, so they pair as before).

    Returns:
        One row per matching pair (per round), columns suffixed ``_a`` and ``_b``.

    """
    a = metrics[metrics[split].astype(str) == a_value]
    b = metrics[metrics[split].astype(str) == b_value]
    if a.empty or b.empty:
        return pd.DataFrame()
    on = list(on)
    if "rep" in a.columns and "rep" in b.columns and "rep" not in on:
        on.append("rep")
    return a.merge(b, on=on, suffixes=("_a", "_b"))


def ratio_columns(pairs: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    """Add B ÷ A throughput and P95 ratios, their intervals and verdicts, to ``out``."""
    tp = [ratio_interval(r.throughput_rps_a, r.throughput_rps_b, r.boot_throughput_a,
                         r.boot_throughput_b) for r in pairs.itertuples(index=False)]
    p95 = [ratio_interval(r.p95_us_a, r.p95_us_b, r.boot_p95_a, r.boot_p95_b)
           for r in pairs.itertuples(index=False)]
    out["throughput_a"] = pairs["throughput_rps_a"].to_numpy()
    out["throughput_b"] = pairs["throughput_rps_b"].to_numpy()
    out["throughput_ratio"], out["throughput_ratio_lo"], out["throughput_ratio_hi"] = (
        zip(*tp, strict=True) if tp else ([], [], []))
    out["throughput_verdict"] = [verdict(lo, hi, higher_is_better=True)
                                 for _, lo, hi in tp]
    out["p95_a_us"] = pairs["p95_us_a"].to_numpy()
    out["p95_b_us"] = pairs["p95_us_b"].to_numpy()
    out["p95_ratio"], out["p95_ratio_lo"], out["p95_ratio_hi"] = (
        zip(*p95, strict=True) if p95 else ([], [], []))
    out["p95_verdict"] = [verdict(lo, hi, higher_is_better=False) for _, lo, hi in p95]
    return out


_LOAD = ["load_kind", "load_level"]

#: Columns of :func:`sync_vs_async`, in order.
SYNC_ASYNC_COLUMNS = [
    "framing", "model", "protocol", "load_kind", "load_level", "users_a", "users_b",
    "in_flight_a", "in_flight_b", "in_flight_multiple", "cell_a", "cell_b", "run_a", "run_b",
    "rounds", "throughput_a", "throughput_b", "throughput_ratio", "throughput_ratio_lo",
    "throughput_ratio_hi", "throughput_ratio_within_lo", "throughput_ratio_within_hi",
    "throughput_ratio_between_lo", "throughput_ratio_between_hi", "throughput_round_ratios",
    "throughput_verdict", "p95_a_us", "p95_b_us", "p95_ratio", "p95_ratio_lo", "p95_ratio_hi",
    "p95_ratio_within_lo", "p95_ratio_within_hi", "p95_ratio_between_lo",
    "p95_ratio_between_hi", "p95_round_ratios", "p95_verdict", "mean_latency_a_us",
    "mean_latency_b_us", "latency_ratio", "predicted_throughput_a", "predicted_throughput_b",
    "predicted_ratio", "regime",
]
#: Columns of :func:`grpc_vs_http`, in order.
GRPC_HTTP_COLUMNS = [
    "model", "mode", "load_kind", "load_level", "users", "cell_a", "cell_b", "run_a", "run_b",
    "rounds", "mean_bytes_sent", "mean_bytes_received", "throughput_a", "throughput_b",
    "throughput_ratio", "throughput_ratio_lo", "throughput_ratio_hi",
    "throughput_ratio_within_lo", "throughput_ratio_within_hi", "throughput_ratio_between_lo",
    "throughput_ratio_between_hi", "throughput_round_ratios", "throughput_verdict", "p95_a_us",
    "p95_b_us", "p95_ratio", "p95_ratio_lo", "p95_ratio_hi", "p95_ratio_within_lo",
    "p95_ratio_within_hi", "p95_ratio_between_lo", "p95_ratio_between_hi", "p95_round_ratios",
    "p95_verdict",
]


def with_run_attributes(metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics with the run attributes (defaulted when absent) and a ``whole_run`` flag.

    ``whole_run``: the group carries all of its run's traffic (the all-models group, or the
    model of a one-model run), so the run's requests in flight are its requests in flight.
    """
    m = metrics.copy()
    for c in ("model", "protocol", "mode", "load_kind", "run_id"):
        if c in m.columns:
            m[c] = m[c].astype(str)
    defaults = {"cell": None, "rep": 1, "framing": "", "users": math.nan,
                "in_flight_per_user": math.nan}
    for c, v in defaults.items():
        if c not in m.columns:
            m[c] = v
    if "run_id" in m.columns:
        m["cell"] = m["cell"].where(m["cell"].notna(), m["run_id"])
    m["framing"] = m["framing"].fillna("").astype(str)
    m["users"] = pd.to_numeric(m["users"], errors="coerce").astype(float)
    m["in_flight_per_user"] = pd.to_numeric(m["in_flight_per_user"], errors="coerce").astype(
        float)
    if len(m) and "run_id" in m.columns:
        models = m[m["model"] != ALL_MODELS].groupby("run_id")["model"].nunique()
        single = m["run_id"].map(models).fillna(0) <= 1
        m["whole_run"] = (m["model"] == ALL_MODELS) | single
    else:
        m["whole_run"] = pd.Series(dtype=bool)
    return m


def _framings(tag: str) -> set[str]:
    """The framings an async run takes part in: its ``framing`` tag, or both when untagged."""
    return set(tag.split("+")) if tag else {EQUAL_IN_FLIGHT, EQUAL_USERS}


def littles_law_regime(in_flight_multiple: float, latency_ratio: float) -> str:
    """Where async's k× requests in flight went, by Little's law (throughput = in flight ÷ latency).

    With k times the requests in flight, throughput grows by k ÷ (latency ratio). The share
    ``log(latency ratio) / log(k)`` says how much of k the latency absorbed: below 1/3
    ``"spare capacity"`` (latency barely rose, throughput ≈ k×), above 2/3 ``"saturated"``
    (latency rose ≈ k×, throughput ≈ 1×), else ``"partly saturated"``; ``""`` when k ≤ 1.5
    (equal requests in flight) or a value is missing.
    """
    k, lat = in_flight_multiple, latency_ratio
    if not (k > 1.5 and lat > 0) or math.isnan(k) or math.isnan(lat):
        return ""
    share = math.log(lat) / math.log(k)
    if share < 1 / 3:
        return "spare capacity"
    if share > 2 / 3:
        return "saturated"
    return "partly saturated"


def _littles_law(g: pd.DataFrame) -> dict:
    """Little's-law columns of one sync/async pair of cells over its rounds."""
    level_a = g["load_level_a"] if "load_level_a" in g.columns else g["load_level"]
    level_b = g["load_level_b"] if "load_level_b" in g.columns else g["load_level"]
    lat_a, lat_b = g["mean_latency_us_a"].astype(float), g["mean_latency_us_b"].astype(float)
    in_a, in_b = float(level_a.mean()), float(level_b.mean())
    mean_a, mean_b = float(lat_a.mean()), float(lat_b.mean())
    multiple = in_b / in_a if in_a else math.nan
    latency_ratio = mean_b / mean_a if mean_a else math.nan
    whole = bool(g["whole_run_a"].all() and g["whole_run_b"].all())
    with np.errstate(divide="ignore", invalid="ignore"):
        pred_a = float((level_a / lat_a * 1e6).mean()) if whole else math.nan
        pred_b = float((level_b / lat_b * 1e6).mean()) if whole else math.nan
    return {
        "users_a": float(g["users_a"].iloc[0]) if "users_a" in g.columns else float(
            g["users"].iloc[0]),
        "users_b": float(g["users_b"].iloc[0]) if "users_b" in g.columns else float(
            g["users"].iloc[0]),
        "in_flight_a": in_a, "in_flight_b": in_b, "in_flight_multiple": multiple,
        "mean_latency_a_us": mean_a, "mean_latency_b_us": mean_b,
        "latency_ratio": latency_ratio,
        "predicted_throughput_a": pred_a, "predicted_throughput_b": pred_b,
        "predicted_ratio": multiple / latency_ratio if latency_ratio else math.nan,
        "regime": littles_law_regime(multiple, latency_ratio),
    }


def sync_vs_async(metrics: pd.DataFrame) -> pd.DataFrame:
    """Async (B) against sync (A), per model × protocol, in both framings.

    * ``equal-in-flight``: at equal load level (requests in flight): sync N users × 1 against
      async with fewer users keeping N in flight. Async runs tagged ``framing`` without it
      are left out.
    * ``equal-users``: at equal users: sync N users × 1 against async N users × k (k > 1
      requests in flight per user), the framing of the published claim. Untagged async runs
      take part in both framings; tagged ones in those their tag lists (``+``-joined).

    Repetitions of a cell (run tags ``cell``/``rep``) are paired by round and collapsed into
    one row per pair of cells (:func:`round_ratio_columns`, :func:`round_ratio_interval`).

    Little's law (throughput = requests in flight ÷ mean latency) explains the ratio: with
    ``in_flight_multiple`` k = async in flight ÷ sync in flight, ``predicted_ratio`` = k ×
    (sync mean latency ÷ async mean latency). At k = 8 it is ≈ 8 when the server had spare
    capacity (latency barely rose) and ≈ 1 when it was saturated (latency rose 8×); see
    :func:`littles_law_regime`.

    Returns:
        :data:`SYNC_ASYNC_COLUMNS`: ``framing``; ``model``, ``protocol``, ``load_kind``,
        ``load_level`` (the sync side's); ``users_a``/``_b``; ``in_flight_a``/``_b`` (users ×
        in flight per user) and ``in_flight_multiple``; ``cell_a``/``_b``; ``run_a``/``_b``
        (comma-joined, round order); ``rounds``; ``throughput_a``/``_b`` (req/s, mean over
        rounds); ``throughput_ratio`` (async ÷ sync) with ``_lo``/``_hi`` (the interval of the
        verdict), ``_within_lo``/``_hi`` (bootstrap within runs), ``_between_lo``/``_hi``
        (Student-t between rounds, NaN for one round); ``throughput_round_ratios`` (per round);
        ``throughput_verdict``; the same for ``p95`` (``p95_a_us``, ``p95_b_us``,
        ``p95_ratio``…, ``p95_verdict``); ``mean_latency_a_us``/``_b_us`` and
        ``latency_ratio`` (async ÷ sync); ``predicted_throughput_a``/``_b`` (in flight ÷ mean
        latency, req/s; NaN for a per-model row of a multi-model run, whose share of the
        requests in flight is unknown); ``predicted_ratio``; ``regime``.

    """
    if metrics.empty or "mode" not in metrics.columns:
        return pd.DataFrame(columns=SYNC_ASYNC_COLUMNS)
    m = with_run_attributes(metrics)
    sync = m[m["mode"] == "sync"]
    asy = m[m["mode"] == "async"]
    member = [_framings(f) for f in asy["framing"]]
    frames = []
    in_flight = asy[np.array([EQUAL_IN_FLIGHT in f for f in member], bool)]
    equal_users = asy[np.array([EQUAL_USERS in f for f in member], bool)
                      & (asy["in_flight_per_user"].to_numpy(float) > 1)]
    for framing, part, on in (
        (EQUAL_IN_FLIGHT, in_flight, ["model", "protocol", *_LOAD]),
        (EQUAL_USERS, equal_users, ["model", "protocol", "load_kind", "users"]),
    ):
        pairs = pair_groups(pd.concat([sync, part]), "mode", "sync", "async", on)
        if pairs.empty:
            continue
        if "load_level" not in on:
            pairs["load_level"] = pairs["load_level_a"]
        keys = ["model", "protocol", *_LOAD, "cell_a", "cell_b"]
        out = round_ratio_columns(pairs, keys, extra=_littles_law)
        out.insert(0, "framing", framing)
        frames.append(out)
    if not frames:
        return pd.DataFrame(columns=SYNC_ASYNC_COLUMNS)
    out = pd.concat(frames, ignore_index=True)[SYNC_ASYNC_COLUMNS]
    order = {EQUAL_IN_FLIGHT: 0, EQUAL_USERS: 1}
    return out.sort_values(["framing", "model", "protocol", "load_level", "in_flight_b"],
                           key=lambda c: c.map(order) if c.name == "framing" else c,
                           kind="stable", ignore_index=True)


def grpc_vs_http(metrics: pd.DataFrame) -> pd.DataFrame:
    """HTTP (B) against gRPC (A) per model × mode × load × users, with payload sizes.

    Repetitions are paired by round and collapsed as in :func:`sync_vs_async`.

    Returns:
        :data:`GRPC_HTTP_COLUMNS`: ``model``, ``mode``, ``load_kind``, ``load_level``,
        ``users``, ``cell_a``/``_b``, ``run_a``/``_b``, ``rounds``, ``mean_bytes_sent``,
        ``mean_bytes_received`` (per request, from the gRPC side), then the ratio columns of
        :func:`sync_vs_async` (HTTP ÷ gRPC), sorted by bytes sent.

    """
    if metrics.empty or "protocol" not in metrics.columns:
        return pd.DataFrame(columns=GRPC_HTTP_COLUMNS)
    m = with_run_attributes(metrics)
    on = ["model", "mode", *_LOAD, "users"]
    pairs = pair_groups(m, "protocol", "grpc", "http", on)
    if pairs.empty:
        return pd.DataFrame(columns=GRPC_HTTP_COLUMNS)

    def sizes(g: pd.DataFrame) -> dict:
        return {"mean_bytes_sent": float(g["mean_bytes_sent_a"].mean()),
                "mean_bytes_received": float(g["mean_bytes_received_a"].mean())}

    out = round_ratio_columns(pairs, [*on, "cell_a", "cell_b"], extra=sizes)
    return out[GRPC_HTTP_COLUMNS].sort_values(["mean_bytes_sent", "model", "load_level"],
                                              ignore_index=True)


def _part(lo: float, hi: float, confirm: bool, refute: bool) -> str:
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if confirm:
        return "confirmed"
    if refute:
        return "not confirmed"
    return "inconclusive"


def _claim_row(r: object) -> dict:
    """One sync/async pair judged against the claim's thresholds."""
    tp = _part(r.throughput_ratio_lo, r.throughput_ratio_hi,
               r.throughput_ratio_lo >= ASYNC_CLAIM_MIN_THROUGHPUT_RATIO,
               r.throughput_ratio_hi < ASYNC_CLAIM_MIN_THROUGHPUT_RATIO)
    if tp == "confirmed" and r.throughput_ratio_lo > ASYNC_CLAIM_MAX_THROUGHPUT_RATIO:
        tp = "exceeded"
    p95 = _part(r.p95_ratio_lo, r.p95_ratio_hi,
                r.p95_ratio_hi <= ASYNC_CLAIM_MAX_P95_RATIO,
                r.p95_ratio_lo > ASYNC_CLAIM_MAX_P95_RATIO)
    if tp in ("confirmed", "exceeded") and p95 == "confirmed":
        overall = "confirmed"
    elif "not confirmed" in (tp, p95):
        overall = "not confirmed"
    else:
        overall = "inconclusive"
    per_user = r.in_flight_b / r.users_b if r.users_b else math.nan
    where = (f"{r.protocol} {r.model}: {r.users_a:g} users × 1 vs {r.users_b:g} × "
             f"{per_user:g} in flight")
    return {
        "framing": r.framing, "where": where, "model": r.model, "protocol": r.protocol,
        "load_kind": r.load_kind, "load_level": r.load_level, "users_a": r.users_a,
        "users_b": r.users_b, "in_flight_a": r.in_flight_a, "in_flight_b": r.in_flight_b,
        "in_flight_multiple": r.in_flight_multiple, "rounds": r.rounds,
        "run_a": r.run_a, "run_b": r.run_b,
        "throughput_a": r.throughput_a, "throughput_b": r.throughput_b,
        "p95_a_us": r.p95_a_us, "p95_b_us": r.p95_b_us,
        "throughput_ratio": r.throughput_ratio,
        "throughput_ratio_lo": r.throughput_ratio_lo,
        "throughput_ratio_hi": r.throughput_ratio_hi, "p95_ratio": r.p95_ratio,
        "p95_ratio_lo": r.p95_ratio_lo, "p95_ratio_hi": r.p95_ratio_hi,
        "latency_ratio": r.latency_ratio, "predicted_ratio": r.predicted_ratio,
        "regime": r.regime, "throughput_part": tp, "p95_part": p95, "verdict": overall,
    }


def _claim_summary(rows: list[dict], framing: str) -> dict:
    """Counts, verdict and a sentence for the pairs of one framing."""
    counts = {k: sum(r["verdict"] == k for r in rows)
              for k in ("confirmed", "not confirmed", "inconclusive")}
    what = ("at equal users (sync N users × 1, async N users × k)" if framing == EQUAL_USERS
            else "at equal requests in flight")
    out = {"pairs": len(rows), "confirmed": counts["confirmed"],
           "not_confirmed": counts["not confirmed"], "inconclusive": counts["inconclusive"],
           "holds": [r["where"] for r in rows if r["verdict"] == "confirmed"],
           "does_not_hold": [r["where"] for r in rows if r["verdict"] == "not confirmed"]}
    if not rows:
        return {**out, "verdict": "no data",
                "summary": f"No sync/async pair {what} in these runs."}
    n = len(rows)
    if counts["confirmed"] == n:
        verdict_ = "confirmed"
    elif counts["not confirmed"] == n:
        verdict_ = "not confirmed"
    elif counts["inconclusive"] == n:
        verdict_ = "inconclusive"
    else:
        verdict_ = "mixed"
    tp = [r["throughput_ratio"] for r in rows]
    p95 = [r["p95_ratio"] for r in rows]
    summary = (
        f"Of {n} sync/async pairs {what}, {counts['confirmed']} confirm it, "
        f"{counts['not confirmed']} contradict it, {counts['inconclusive']} are "
        f"inconclusive; async/sync throughput ratio ranges "
        f"{np.nanmin(tp):.2f}x-{np.nanmax(tp):.2f}x and P95 ratio "
        f"{np.nanmin(p95):.2f}-{np.nanmax(p95):.2f} (0.60 would be -40%).")
    return {**out, "verdict": verdict_, "summary": summary}


def async_claim_check(pairs: pd.DataFrame) -> dict:
    """Check the published claim "async: 3-5x throughput, P95 -40%" against sync-vs-async pairs.

    The claim is about replacing sync users by as many async users that each keep k requests
    in flight, so it is judged in the ``equal-users`` framing (:data:`ASYNC_CLAIM_FRAMING`);
    the ``equal-in-flight`` pairs are judged by the same rule and reported beside it, not
    counted in the verdict.

    Per pair, the throughput part is *confirmed* when the interval of the async/sync
    throughput ratio (the combined interval of :func:`round_ratio_interval`) lies at or above
    3 (``exceeded`` when also above 5), *not confirmed* when it lies below 3, else
    *inconclusive*. The P95 part is *confirmed* when the interval of the P95 ratio lies at or
    below 0.6, *not confirmed* when it lies above 0.6, else *inconclusive*. A pair confirms
    the claim only when both parts are confirmed.

    Args:
        pairs: output of :func:`sync_vs_async`.

    Returns:
        ``{"claim", "framing", "pairs": [...per-pair dicts of both framings, each with
        "framing", "where", the ratios, "predicted_ratio", "regime", "throughput_part",
        "p95_part", "verdict"...], "confirmed", "not_confirmed", "inconclusive", "holds",
        "does_not_hold", "verdict", "summary", "by_framing": {framing: {"pairs",
        "confirmed", "not_confirmed", "inconclusive", "holds", "does_not_hold", "verdict",
        "summary"}}}``. The top-level counts, ``holds`` (where the claim holds),
        ``does_not_hold`` and ``verdict`` (``"confirmed"``, ``"not confirmed"``,
        ``"mixed"``, ``"inconclusive"`` or ``"no data"``) are those of the claim's framing.

    """
    if "framing" not in pairs.columns:
        pairs = pairs.assign(framing=EQUAL_IN_FLIGHT)
    rows = [_claim_row(r) for r in pairs.itertuples(index=False)] if len(pairs) else []
    by_framing = {f: _claim_summary([r for r in rows if r["framing"] == f], f)
                  for f in (ASYNC_CLAIM_FRAMING, EQUAL_IN_FLIGHT)}
    judged = by_framing[ASYNC_CLAIM_FRAMING]
    other = by_framing[EQUAL_IN_FLIGHT]
    if judged["verdict"] == "no data":
        summary = (f"No sync/async pair at equal users (sync N users × 1, async N users × k: "
                   f"the framing of the published claim, {ASYNC_CLAIM}) in these runs: the "
                   "claim cannot be checked.")
    else:
        summary = f"Published claim ({ASYNC_CLAIM}): {judged['verdict']} by this data. " + (
            judged["summary"])
    if other["verdict"] != "no data":
        summary += (f" At equal requests in flight (not the claim's framing): "
                    f"{other['verdict']}. " + other["summary"])
    return {"claim": ASYNC_CLAIM, "framing": ASYNC_CLAIM_FRAMING, "pairs": rows,
            "confirmed": judged["confirmed"], "not_confirmed": judged["not_confirmed"],
            "inconclusive": judged["inconclusive"], "holds": judged["holds"],
            "does_not_hold": judged["does_not_hold"], "verdict": judged["verdict"],
            "summary": summary, "by_framing": by_framing}


#: Metrics compared by :func:`compare_runs`: column → (bootstrap column, higher is better,
#: "ratio" or "difference").
AB_METRICS = {
    "throughput_rps": ("boot_throughput", True, "ratio"),
    "p50_us": ("boot_p50", False, "ratio"),
    "p95_us": ("boot_p95", False, "ratio"),
    "p99_us": ("boot_p99", False, "ratio"),
    "error_rate": ("boot_error_rate", False, "difference"),
}


def compare_runs(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Set two runs (or run sets) side by side, metric by metric.

    Groups are matched on model × protocol × mode × load kind × load level. When nothing
    matches and each side has a single load level, groups are matched on model × protocol ×
    mode alone (``load_matched`` is false).

    Args:
        a: :func:`analysis.metrics.request_metrics` of the baseline.
        b: :func:`analysis.metrics.request_metrics` of the candidate.

    Returns:
        Long format: one row per matched group × metric with ``a``, ``b``, ``change`` (B/A − 1
        for ratio metrics, B − A for the error rate), ``change_lo``, ``change_hi``,
        ``kind`` and ``verdict``.

    """
    keys = ["model", "protocol", "mode", *_LOAD]
    a, b = a.copy(), b.copy()
    for f in (a, b):
        for c in ("model", "protocol", "mode", "load_kind"):
            f[c] = f[c].astype(str)
    pairs = a.merge(b, on=keys, suffixes=("_a", "_b"))
    load_matched = True
    if pairs.empty and a["load_level"].nunique() == 1 and b["load_level"].nunique() == 1:
        pairs = a.merge(b, on=keys[:3], suffixes=("_a", "_b"))
        load_matched = False
        pairs["load_kind"] = pairs["load_kind_a"] + "/" + pairs["load_kind_b"]
        pairs["load_level"] = pairs["load_level_a"].map("{:g}".format) + "/" + pairs[
            "load_level_b"].map("{:g}".format)
    rows = []
    for r in pairs.to_dict("records"):
        for metric, (boot, higher_better, kind) in AB_METRICS.items():
            va, vb = r[f"{metric}_a"], r[f"{metric}_b"]
            if kind == "ratio":
                ratio, lo, hi = ratio_interval(va, vb, r[f"{boot}_a"], r[f"{boot}_b"])
                change, clo, chi = ratio - 1, lo - 1, hi - 1
            else:
                change, clo, chi = difference_interval(va, vb, r[f"{boot}_a"], r[f"{boot}_b"])
            rows.append({
                **{k: r[k] for k in keys}, "load_matched": load_matched,
                "metric": metric, "a": va, "b": vb, "change": change, "change_lo": clo,
                "change_hi": chi, "kind": kind,
                "verdict": verdict(clo, chi, higher_is_better=higher_better, null=0.0),
            })
    cols = [*keys, "load_matched", "metric", "a", "b", "change", "change_lo", "change_hi",
            "kind", "verdict"]
    return pd.DataFrame(rows, columns=cols)
