"""Dynamic batching for a P95 SLO: the config to set and the capacity it should reach.

From measured batch formation, recommend ``preferred_batch_size`` and
``max_queue_delay_microseconds`` for a dynamically batching model, and predict its capacity.

Pure functions (apart from `batch_probe`, which reads one run directory):

* `execution_cost` fits the compute time of one execution against its batch size,
  ``c(b) = (base + per_item·b)·(1 + overhead)``, from the server's per-batch-size statistics.
* `recommend` turns the fit, the SLO and the model's instance count into a config, with the
  arithmetic written out and the ``config.pbtxt`` lines to set.
* `batch_formation` summarises each load level's batches (histogram, mean batch, queue time
  against P95), one level at a time, never pooled, for the report to draw.

The rule
--------
With ``n`` instances, batches of ``b`` cost ``c(b)`` each, so the model's ceiling at batch
``b`` is ``n·b/c(b)`` requests per second. That grows with ``b`` whenever ``base > 0`` (the
base cost is shared by the batch), so capacity wants the largest batch the SLO allows.

1. **Latency of batch b under load:** P95 ≈ ``(1 + 1/n)·c(b)``: a request's own execution,
   plus the gap until one of ``n`` staggered instances frees up (``c(b)/n``), during which its
   batch gathers (at the operating rate ``λ = n·b/c(b)`` exactly ``b`` requests arrive in that
   gap). For one instance this is the familiar "wait one execution, run one execution": 2·c.
2. **Budget:** choose the largest ``b ≤ max_batch_size`` with ``(1 + 1/n)·c(b) ≤ (1 − 0.2)·SLO
   − client overhead``. The 20% is headroom for what the cost model does not see: Poisson
   bursts beyond the estimate, cost jitter, the front end and the network. No ``b`` (not even
   1) fits: the result says **cannot meet** instead of proposing a config.
3. **Capacity:** ``0.85·n·b/c(b)``. Under Poisson arrivals P95 reaches the rule-1 estimate at
   about 85% of the ceiling: in the simulation below, at b = 16–24 for the three demo models,
   P95 at 85% of the ceiling was within −18% … +19% of ``(1 + 1/n)·c(b)``; the knee (P95 =
   SLO) lay at 88–99% of the ceiling for the two-instance models (beyond it for
   image_classifier, whose backlog the delay lets Triton batch past ``b``).
4. **Delay:** ``max_queue_delay = c(0)``, the base cost, rounded to 100 µs. Waiting is worth
   at most what the waiting can save: if request A waits ``x`` for a companion, the companion
   finishes at ``x + base + 2·per_item``; had A gone alone, the companion would run next and
   finish at ``2·base + 2·per_item``. Waiting helps only while ``x < base``. Capped so that a
   light-load request (wait ``d``, queued behind one single execution, then its own:
   ``d + 2·c(1)``) stays within the budget.

``preferred_batch_size = [b]`` makes Triton send a batch as soon as ``b`` requests are queued
instead of waiting for ``max_batch_size``. It is not a hard cap: once the oldest queued
request has waited ``max_queue_delay``, Triton (core's ``GetDynamicBatch``) sends everything
pending up to ``max_batch_size``, so a backlog is cleared in one bigger batch. The prediction
does not count on that relief.

Why not wait for a full batch (``d = b/λ``)? The delay only matters when an instance is idle.
Under load the batch gathers in the queue while the instances are busy, whatever the delay;
at light and moderate load a long delay only adds latency. A discrete-event simulation of
core's ``GetDynamicBatch`` with the fitted costs below (Poisson arrivals; run for this module,
not shipped; the measured P95s ran 4–22% above it) put the P95 = 50 ms knee of
text_classifier at 1,385 req/s with the recommended config and with today's, 1,445 with no
delay, and 1,325 with ``d = b/λ`` (15.3 ms), whose P95 at 400 req/s was 30 ms instead of 14;
recommender: 1,982, 1,982, 2,022 and 1,823. Between 0 and one base cost the delay moved the
knee by under 5%; with one instance (image_classifier) a zero delay made ``b`` a hard cap and
cost 13%, which is why the delay is not 0.

So the knobs move capacity little: the cost model and the SLO set it. What the rule adds is
the number (what capacity to expect, before a search confirms it) and a config that does not
waste it.

Worked example: the demo fleet at SLO 50 ms (budget 40 ms, ``tritonload.server.fleet``)
-------------------------------------------------------------------------------------
text_classifier, ``c(b) = 4,000 + 1,000·b`` µs, max 32, 2 instances: ``1.5·c(b) ≤ 40 ms`` ⇒
``c(b) ≤ 26.7 ms`` ⇒ ``b = 22`` (26.0 ms). Ceiling ``2·22/26.0 ms`` = 1,692 req/s; capacity
``0.85 ×`` that = 1,438 req/s; delay 4,000 µs.

recommender, ``2,000 + 800·b``, max 128, 2 instances: ``b = 30`` (26.0 ms); ceiling 2,308;
capacity 1,962 req/s; delay 2,000 µs.

image_classifier, ``8,000 + 500·b``, max 64, 1 instance: ``2·c(b) ≤ 40 ms`` ⇒ ``b = 24``
(20.0 ms); ceiling 1,200; capacity 1,020 req/s; delay 8,000 µs.

Check against the measurements (gRPC, open loop, this 2-core machine)
---------------------------------------------------------------------
Fits over the steady windows of the four probes per model in ``/tmp/exp`` (5 s runs at 400,
1,000, 1,600 and 2,200 req/s, today's configs): text_classifier ``c(b) = (4,222 + 1,028·b)``
µs × 1.047 (input/output), 1,317 executions over 23 batch sizes, RMS error 0.3%;
recommender ``(2,224 + 812·b)`` × 1.052, 2,881 executions over 55 sizes, RMS error 0.6%
(R² 1.000 both). That is the demo's sleep plus 4–6% of Python backend time. Σ compute_infer_ns
of ``server_stats`` equals Σ b·compute_infer_ns of ``server_batches`` exactly, as it should
(each request is charged its batch's time). The 2,200 req/s probe of text_classifier alone
holds only batches of 32: one size, no fit (see `execution_cost`).

With these fits, at SLO 50 ms: text_classifier ``b = 20`` (c = 25.9 ms), delay 4,400 µs,
capacity 1,310 req/s (ceiling 1,542); recommender ``b = 28`` (26.3 ms), delay 2,300 µs,
capacity 1,812 req/s (ceiling 2,132). Measured with today's configs: text_classifier P95
26.1 ms at 1,000 req/s and 85.5 ms at 1,600 (it saturates at ~1,590 req/s with batches of
32: the fit's ceiling ``2·32/38.9 ms`` = 1,647 is 3% above, time the backend spends outside
the measured phases); recommender 26.8 ms at 1,600 and 186 ms at 2,200. Both knees lie
between those rates, as predicted. image_classifier (no probe data here) is not served at the
predicted rate on this machine: its P95 was 30.7 ms at 200 req/s and 66 ms at 800, against
~19 and ~32 ms the cost model gives, because each request carries a 600 KB tensor through the
gRPC front end on the 2 cores the load generator shares. That time is outside ``c(b)``: pass
it as ``client_overhead_us`` (≈ 11 ms here: P95 at a light load minus the model's), or expect
the capacity search to find the host's limit, not the model's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tritonload.core import schema
from tritonload.core.errors import UsageError
from tritonload.core.numbers import run_numbers
from tritonload.core.rundir import read_run_json

#: Share of the SLO kept free for what the cost model does not see.
DEFAULT_HEADROOM = 0.20
#: Share of the ceiling n·b/c(b) at which P95 reaches (1 + 1/n)·c(b) under Poisson arrivals.
KNEE_UTILISATION = 0.85
#: The delay is rounded to this many µs.
DELAY_STEP_US = 100
#: A fit whose execution-weighted RMS relative error exceeds this is called poor.
GOOD_FIT_RMS = 0.10

#: `CostFit.quality` values.
GOOD = "good"
POOR = "poor"
ONE_SIZE = "one batch size"
NO_EXECUTIONS = "no executions"

#: `Recommendation.status` values.
OK = "ok"
CANNOT_MEET = "cannot meet"
NO_DATA = "no data"


@dataclass(frozen=True)
class CostFit:
    """Compute time of one execution against its batch size: ``(base + per_item·b)·(1+overhead)``.

    ``base_us`` and ``per_item_us`` are fitted to compute_infer; ``overhead_ratio`` adds
    compute_input and compute_output, which the statistics give per request, not per batch
    size, as a proportion of compute_infer. ``observed`` holds the measured points
    ``(batch_size, executions, mean compute_infer µs)``.
    """

    base_us: float
    per_item_us: float
    overhead_ratio: float
    executions: int
    batch_sizes: tuple[int, ...]
    r2: float
    rms_rel_error: float
    quality: str
    note: str = ""
    observed: tuple[tuple[int, int, float], ...] = field(default=(), repr=False)

    @property
    def usable(self) -> bool:
        """Whether the fit can drive a recommendation."""
        return self.quality != NO_EXECUTIONS and math.isfinite(self.base_us + self.per_item_us)

    def infer_us(self, batch_size: float) -> float:
        """Fitted compute_infer of one execution of ``batch_size`` requests."""
        return self.base_us + self.per_item_us * batch_size

    def cost_us(self, batch_size: float) -> float:
        """Fitted compute time (input + infer + output) of one execution."""
        return self.infer_us(batch_size) * (1.0 + self.overhead_ratio)

    def describe(self) -> str:
        """One line: the fitted formula, what it rests on and how well it fits."""
        if not self.usable:
            return f"no cost fit: {self.note or 'no executions measured'}"
        sizes = len(self.batch_sizes)
        return (f"c(b) = ({self.base_us:,.0f} + {self.per_item_us:,.0f}·b) µs compute_infer "
                f"× {1 + self.overhead_ratio:.3f} (input/output) from {self.executions:,} "
                f"executions over {sizes} batch size{'s' * (sizes != 1)}; "
                f"R² {self.r2:.3f}, RMS error {self.rms_rel_error:.1%}: {self.quality}"
                + (f" ({self.note})" if self.note else ""))


def _per_size(batches: pd.DataFrame) -> pd.DataFrame:
    if batches is None or batches.empty:
        return pd.DataFrame(columns=["batch_size", "executions", "compute_infer_ns"])
    g = batches.groupby("batch_size", observed=True)[["executions", "compute_infer_ns"]].sum()
    g = g[g["executions"] > 0].reset_index()
    return g[g["batch_size"] > 0].sort_values("batch_size", ignore_index=True)


def overhead_ratio(stats: pd.DataFrame | None) -> float:
    """(Σ compute_input + Σ compute_output) ÷ Σ compute_infer of server-stats rows (0 if none).

    All three are charged per request with its batch's time, so the ratio is the share of
    an execution spent outside compute_infer.
    """
    if stats is None or stats.empty:
        return 0.0
    infer = float(stats["compute_infer_ns"].sum())
    if infer <= 0:
        return 0.0
    return float(stats["compute_input_ns"].sum() + stats["compute_output_ns"].sum()) / infer


def execution_cost(batches: pd.DataFrame, stats: pd.DataFrame | None = None) -> CostFit:
    """Fit ``c(b) = base + per_item·b`` to the mean compute_infer per execution of each size.

    Least squares over the per-batch-size means, weighted by executions (the same as fitting
    every execution). Pass the ``server_batches`` rows of one model, over the steady windows
    of as many probes as there are: more load levels give more batch sizes.

    * Only one batch size: base and per-item cost cannot be told apart; the fit assumes the
      worst case for batching (all cost per item, base 0) and says so.
    * A negative slope or intercept (noise over a narrow range of sizes) is refitted with that
      term at 0, and noted.
    * No executions: ``quality`` is ``"no executions"`` and `recommend` answers ``"no data"``.

    ``stats`` (the ``server_stats`` rows of the same model and windows) adds compute_input and
    compute_output as a proportion (`overhead_ratio`).
    """
    ratio = overhead_ratio(stats)
    g = _per_size(batches)
    if g.empty:
        return CostFit(math.nan, math.nan, ratio, 0, (), math.nan, math.nan, NO_EXECUTIONS,
                       "no executions in the batch statistics")
    x = g["batch_size"].to_numpy(np.float64)
    w = g["executions"].to_numpy(np.float64)
    y = g["compute_infer_ns"].to_numpy(np.float64) / w / 1000.0
    observed = tuple((int(b), int(e), float(m)) for b, e, m in zip(x, w, y, strict=True))
    sizes = tuple(int(b) for b in x)
    note = ""
    if len(x) == 1:
        base, per_item = 0.0, float(y[0] / x[0])
        quality = ONE_SIZE
        note = (f"only batch size {sizes[0]} was measured, so base and per-item cost cannot be "
                f"told apart; assumed all per item, which gives batching no gain. Probe at a "
                f"higher rate so that batches of several sizes form")
    else:
        base, per_item = _weighted_line(x, y, w)
        if per_item < 0:
            base, per_item = float(np.average(y, weights=w)), 0.0
            note = "fitted per-item cost was negative; refitted as a constant"
        elif base < 0:
            base, per_item = 0.0, float(np.sum(w * x * y) / np.sum(w * x * x))
            note = "fitted base cost was negative; refitted through the origin"
        quality = ""
    fitted = base + per_item * x
    mean = np.average(y, weights=w)
    ss_tot = float(np.sum(w * (y - mean) ** 2))
    ss_res = float(np.sum(w * (y - fitted) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    rms = float(np.sqrt(np.average(((fitted - y) / y) ** 2, weights=w)))
    if not quality:
        quality = GOOD if rms <= GOOD_FIT_RMS and not note else POOR
    return CostFit(float(base), float(per_item), ratio, int(w.sum()), sizes, float(r2), rms,
                   quality, note, observed)


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    sw = np.sqrt(w)
    a = np.column_stack([np.ones_like(x), x]) * sw[:, None]
    (base, per_item), *_ = np.linalg.lstsq(a, y * sw, rcond=None)
    return float(base), float(per_item)


@dataclass(frozen=True)
class Recommendation:
    """A dynamic-batching config for one model and the capacity it should reach.

    ``status`` is ``"ok"``, ``"cannot meet"`` (even one request alone breaks the budget: the
    fields hold the lowest-latency config, batch 1 and no delay, and the capacity is 0) or
    ``"no data"`` (no executions measured: no config, NaN capacity).
    """

    status: str
    preferred_batch_size: int | None
    max_queue_delay_us: int | None
    predicted_capacity_rps: float
    ceiling_rps: float  # n·b/c(b): every instance busy with batches of b
    batch_cost_us: float  # c(b)
    predicted_p95_us: float  # (1 + 1/n)·c(b) + client overhead, near the predicted capacity
    slo_p95_us: float
    instances: int
    max_batch_size: int
    reasoning: str
    pbtxt: str

    @property
    def meets_slo(self) -> bool:
        """Whether the recommendation is expected to meet the SLO at some load."""
        return self.status == OK

    def set_options(self, model: str) -> tuple[str, ...]:
        """``--set`` values for the embedded server (``tritonload serve/capacity --set``)."""
        if self.preferred_batch_size is None or self.max_queue_delay_us is None:
            return ()
        return (f"{model}.max_queue_delay_us={self.max_queue_delay_us}",
                f"{model}.preferred_batch_sizes={self.preferred_batch_size}")


def pbtxt_lines(instances: int, preferred: Sequence[int], delay_us: int) -> str:
    """The config.pbtxt lines of a dynamic-batching config (as ``cli.sweep.ServerConfig``)."""
    sizes = ", ".join(map(str, preferred))
    pref = f"  preferred_batch_size: [ {sizes} ]\n" if sizes else ""
    return (f"instance_group [ {{ count: {instances} }} ]\n"
            f"dynamic_batching {{\n{pref}  max_queue_delay_microseconds: {delay_us}\n}}\n")


def _ms(us: float) -> str:
    return f"{us / 1000:,.1f} ms"


def recommend(cost: CostFit, *, slo_p95_us: float, instances: int, max_batch_size: int,
              current_delay_us: int | None = None, current_preferred: Sequence[int] = (),
              client_overhead_us: float = 0.0, headroom: float = DEFAULT_HEADROOM,
              knee_utilisation: float = KNEE_UTILISATION) -> Recommendation:
    """Preferred batch size, queue delay and predicted capacity for a P95 SLO (module rule).

    Args:
        cost: `execution_cost` of the model.
        slo_p95_us: the P95 objective, µs.
        instances: the model's instance count (``instance_group`` count).
        max_batch_size: the model's ``max_batch_size`` (the preferred size stays within it).
        current_delay_us: today's ``max_queue_delay_microseconds``, to say what changes.
        current_preferred: today's preferred batch sizes, to say what changes.
        client_overhead_us: latency outside the server (front end, network, client), taken
            off the budget.
        headroom: share of the SLO kept free (default 20%).
        knee_utilisation: share of the ceiling ``n·b/c(b)`` predicted as capacity.

    Raises:
        UsageError: on arguments no model can have (SLO ≤ 0, no instance, max batch < 1,
            headroom outside [0, 1), utilisation outside (0, 1]). A model that cannot meet
            the SLO is a result, not an error.

    """
    if not slo_p95_us > 0:
        raise UsageError(f"recommend: the SLO must be > 0 µs, got {slo_p95_us}")
    if instances < 1 or max_batch_size < 1:
        raise UsageError(f"recommend: need instances >= 1 and max_batch_size >= 1, got "
                         f"{instances} and {max_batch_size}")
    if not 0 <= headroom < 1 or not 0 < knee_utilisation <= 1 or client_overhead_us < 0:
        raise UsageError("recommend: headroom must be in [0, 1), knee_utilisation in (0, 1] "
                         "and client_overhead_us >= 0")
    n = instances
    factor = 1.0 + 1.0 / n
    budget = (1.0 - headroom) * slo_p95_us - client_overhead_us
    current = _current(current_delay_us, current_preferred)
    lines = [f"Cost: {cost.describe()}."]
    common = dict(slo_p95_us=float(slo_p95_us), instances=n, max_batch_size=max_batch_size)

    if not cost.usable:
        lines.append("No recommendation without measured executions: probe the model at a "
                     "rate where it executes batches.")
        return Recommendation(NO_DATA, None, None, math.nan, math.nan, math.nan, math.nan,
                              reasoning="\n".join(lines), pbtxt="", **common)

    budget_text = (f"Budget: (1 − {headroom:.0%}) × SLO {_ms(slo_p95_us)}"
                   + (f" − client overhead {_ms(client_overhead_us)}" if client_overhead_us
                      else "") + f" = {_ms(budget)}.")
    lines.append(budget_text)
    sizes = np.arange(1, max_batch_size + 1, dtype=np.float64)
    costs = cost.cost_us(sizes)
    fits = factor * costs <= budget
    c1 = float(costs[0])
    if not fits[0]:
        lines.append(
            f"Cannot meet: one request alone costs c(1) = {c1:,.0f} µs, and under load its P95 "
            f"is about (1 + 1/{n}) × c(1) = {factor * c1:,.0f} µs > {budget:,.0f} µs. No "
            f"batching config helps; it takes a faster model or instance, or a looser SLO. "
            f"The lowest-latency config (batch 1, no delay) is shown.")
        return Recommendation(CANNOT_MEET, 1, 0, 0.0, n / c1 * 1e6, c1,
                              factor * c1 + client_overhead_us,
                              reasoning="\n".join(lines), pbtxt=pbtxt_lines(n, (1,), 0),
                              **common)

    if cost.base_us <= 0:
        b = 1
        lines.append("The fit has no base cost: the ceiling n·b/c(b) does not grow with b, so "
                     "batching adds latency without capacity; batch size 1.")
    else:
        b = int(sizes[fits][-1])
        cb = float(costs[b - 1])
        limit = (f"the largest b ≤ max_batch_size {max_batch_size}" if b == max_batch_size
                 else f"the largest b with (1 + 1/{n}) × c(b) ≤ {budget:,.0f} µs")
        lines.append(f"Batch: {limit} is b = {b}: c({b}) = {cb:,.0f} µs, (1 + 1/{n}) × c({b}) "
                     f"= {factor * cb:,.0f} µs (own execution + the gap until one of {n} "
                     f"instance{'s' * (n > 1)} frees up).")
        if b == max_batch_size and factor * cost.cost_us(b + 1) <= budget:
            lines.append(f"max_batch_size {max_batch_size} limits the batch; the SLO would "
                         f"allow larger ones, and more capacity with them.")
    cb = float(costs[b - 1])
    ceiling = n * b / cb * 1e6
    capacity = knee_utilisation * ceiling
    lines.append(f"Capacity: {knee_utilisation:.0%} × n·b/c(b) = {knee_utilisation:.0%} × "
                 f"{n}·{b}/{cb:,.0f} µs = {knee_utilisation:.0%} × {ceiling:,.0f} = "
                 f"{capacity:,.0f} req/s.")
    delay, delay_text = _delay(cost, b, budget, c1)
    lines.append(delay_text)
    if current:
        lines.append(f"Change: {current} → delay {delay} µs, preferred [{b}].")
    return Recommendation(OK, b, delay, capacity, ceiling, cb, factor * cb + client_overhead_us,
                          reasoning="\n".join(lines), pbtxt=pbtxt_lines(n, (b,), delay),
                          **common)


def _delay(cost: CostFit, b: int, budget: float, c1: float) -> tuple[int, str]:
    if b == 1:
        return 0, "Delay: 0 µs (batch 1 needs no company)."
    base = cost.cost_us(0)
    cap = max(0.0, budget - 2.0 * c1)
    step = DELAY_STEP_US
    # Rounded to the nearest step, but never up past the cap.
    delay = int(math.floor(cap / step) * step) if cap < base else int(round(base / step) * step)
    text = (f"Delay: the base cost c(0) = {base:,.0f} µs (a companion arriving later than that "
            f"finishes sooner in the next execution)")
    if cap < base:
        text += (f", capped at budget − 2·c(1) = {cap:,.0f} µs so a light-load request (wait, "
                 f"one execution ahead, its own) stays within budget")
    return delay, text + f"; rounded: {delay} µs."


def _current(delay_us: int | None, preferred: Sequence[int]) -> str:
    if delay_us is None and not preferred:
        return ""
    parts = []
    if delay_us is not None:
        parts.append(f"delay {int(delay_us)} µs")
    parts.append(f"preferred {list(preferred) or 'none'}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Batch formation per load level
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchProbe:
    """One load level of one model: what the client saw and the server's rows for its window.

    ``batches`` and ``stats`` are ``server_batches`` / ``server_stats`` rows of this model only,
    restricted to the probe's steady window.
    """

    offered_rps: float
    throughput_rps: float
    p95_us: float
    batches: pd.DataFrame = field(repr=False)
    stats: pd.DataFrame = field(repr=False)


FORMATION_COLUMNS = ["offered_rps", "throughput_rps", "p95_us", "executions_total",
                     "mean_batch", "queue_us", "compute_us", "queue_share_of_p95",
                     "batch_size", "executions", "share"]


def batch_formation(probes: Sequence[BatchProbe]) -> pd.DataFrame:
    """Batch histogram and queueing per load level (never pooled across levels).

    Returns:
        One row per probe × batch size, ordered by offered rate then size: the level's
        ``offered_rps``, ``throughput_rps``, ``p95_us``, ``executions_total``, ``mean_batch``
        (Σ b·executions ÷ Σ executions), ``queue_us`` and ``compute_us`` (server means per
        request: Σ ns ÷ Σ count; compute = input + infer + output), ``queue_share_of_p95``
        (mean queue time ÷ P95), then ``batch_size``, ``executions`` and ``share`` of the
        level's executions. A level without executions is one row with ``batch_size`` <NA>.

    """
    rows: list[dict] = []
    for p in sorted(probes, key=lambda p: p.offered_rps):
        g = _per_size(p.batches)
        total = int(g["executions"].sum()) if len(g) else 0
        mean_batch = (float((g["batch_size"] * g["executions"]).sum()) / total if total
                      else math.nan)
        queue = _phase_us(p.stats, ("queue",))
        compute = _phase_us(p.stats, ("compute_input", "compute_infer", "compute_output"))
        level = {"offered_rps": float(p.offered_rps), "throughput_rps": float(p.throughput_rps),
                 "p95_us": float(p.p95_us), "executions_total": total,
                 "mean_batch": mean_batch, "queue_us": queue, "compute_us": compute,
                 "queue_share_of_p95": queue / p.p95_us if p.p95_us > 0 else math.nan}
        if not total:
            rows.append({**level, "batch_size": pd.NA, "executions": 0, "share": math.nan})
        for r in g.itertuples(index=False):
            rows.append({**level, "batch_size": int(r.batch_size),
                         "executions": int(r.executions), "share": r.executions / total})
    out = pd.DataFrame(rows, columns=FORMATION_COLUMNS)
    return out.astype({"batch_size": "Int64", "executions": "int64",
                       "executions_total": "int64"})


def _phase_us(stats: pd.DataFrame | None, phases: Sequence[str]) -> float:
    if stats is None or stats.empty:
        return math.nan
    total = 0.0
    for phase in phases:
        count = float(stats[f"{phase}_count"].sum())
        if count <= 0:
            return math.nan
        total += float(stats[f"{phase}_ns"].sum()) / count / 1000.0
    return total


def batch_probe(run_dir: str | Path, model: str, *, offered_rps: float | None = None
                ) -> BatchProbe:
    """Read one probe run directory into a `BatchProbe` for ``model``.

    The steady window, throughput and P95 are ``tritonload.core.numbers``'s (the model's own
    requests); server intervals count when their midpoint lies in the window (all of them
    when none does, as in the report). ``offered_rps`` defaults to run.json's load level
    when the load kind is ``rate`` (else NaN).
    """
    run_dir = Path(run_dir)
    meta = read_run_json(run_dir)
    numbers = run_numbers(run_dir, by=("model",))
    mine = numbers.groups.get((model,))
    if offered_rps is None:
        load = meta.get("load") or {}
        offered_rps = float(load.get("level", math.nan)) if load.get("kind") == "rate" \
            else math.nan
    window = numbers.window

    def server(name: str, columns: Sequence[str]) -> pd.DataFrame:
        path = run_dir / name
        if not path.exists():
            return pd.DataFrame(columns=list(columns))
        frame = pd.read_parquet(path)
        frame = frame[frame["model"].astype(str) == model]
        mid = (frame["t_start_ns"].to_numpy(np.float64)
               + frame["t_end_ns"].to_numpy(np.float64)) / 2
        inside = (mid >= window.start_ns) & (mid < window.end_ns)
        return (frame[inside] if inside.any() else frame).reset_index(drop=True)

    return BatchProbe(
        offered_rps=float(offered_rps),
        throughput_rps=float(mine.throughput_rps) if mine else 0.0,
        p95_us=float(mine.percentile_ms(95) * 1000.0) if mine else math.nan,
        batches=server(schema.SERVER_BATCHES_FILE, schema.SERVER_BATCHES.names),
        stats=server(schema.SERVER_STATS_FILE, schema.SERVER_STATS.names),
    )


def model_config(run_dir: str | Path, model: str) -> dict:
    """Instances, max batch size, queue delay and preferred sizes from run.json's model config."""
    config = (read_run_json(run_dir).get("models") or {}).get(model) or {}
    batching = config.get("dynamic_batching") or {}
    instances = sum(int(g.get("count", 1)) for g in config.get("instance_group") or [{}])
    return {"instances": max(instances, 1), "max_batch_size": int(config.get("max_batch_size", 0)),
            "current_delay_us": int(batching.get("max_queue_delay_microseconds", 0)),
            "current_preferred": tuple(int(b) for b in batching.get("preferred_batch_size", ())),
            "dynamic_batching": bool(batching)}


def recommend_from_probes(run_dirs: Sequence[str | Path], model: str, slo_p95_us: float
                          ) -> tuple[Recommendation, CostFit, pd.DataFrame]:
    """Recommend from one model's capacity-search probes.

    Returns the recommendation, its cost fit, and the batch formation per load level (the
    report's histograms).
    """
    if not run_dirs:
        raise UsageError(f"{model}: no probes to recommend a batching config from")
    probes = [batch_probe(d, model) for d in run_dirs]
    batches = pd.concat([p.batches for p in probes], ignore_index=True)
    stats = pd.concat([p.stats for p in probes], ignore_index=True)
    cost = execution_cost(batches, stats)
    config = model_config(run_dirs[0], model)
    recommendation = recommend(cost, slo_p95_us=slo_p95_us, instances=config["instances"],
                               max_batch_size=config["max_batch_size"],
                               current_delay_us=config["current_delay_us"],
                               current_preferred=config["current_preferred"])
    return recommendation, cost, batch_formation(probes)
