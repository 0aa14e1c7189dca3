"""The capacity search: the highest open-loop rate whose P95 stays within the SLO.

The P95 judged is the request latency's by default. A generative model's search judges its
time to first token or its inter-token latency instead (`SearchLimits.metric`, with the
numbers of `tritonload.core.tokens`); the rest of the search is the same. Under both a TTFT and
an ITL objective, one search runs per objective and the lower knee binds: each metric only
grows with the rate, so a rate within both is within the lower of the two knees.

A concurrency ladder stops where it stops: the demo's (1, 4, 16 in flight) never reached the
knee of 5 of its 6 models, so the report could only say "≥ 206.7 req/s". Here the rate is
searched for instead. Each *probe* offers a Poisson rate open loop (latency counts from the
scheduled send time, so queueing is never hidden) and is judged on its steady window:

* it **passes** when its P95 ≤ SLO and its error rate ≤ the bound;
* it is **not trusted** when the generator, not the server, shaped it
  (`tritonload.cli.capacity.judge_probe`, on `tritonload.core.validity`): a saturated client
  always; dropped sends when the probe passed (the server saw less than the rate). Late sends
  alone never: latency counts from the schedule, so lateness can only make a probe fail. An
  untrusted probe at or below the lowest failure ends the search (going higher would measure
  the client).

The search brackets the knee, growing the rate ×4 while P95 is under half the SLO and ×2
after (overshooting costs nothing: a probe takes the same time at any rate). It then narrows
the bracket by interpolating log P95 against rate, kept to the middle half of the bracket (so
a bad guess still halves it), until the bracket is within ±5%. On queue-like curves
(tests/engine/test_knee.py) a search settles in 4–8 probes; on the demo fleet in 6–9, since
its P95 stays flat under batching and then climbs steeply.

The answer is where P95 crosses the SLO, interpolated between the last passing and the first
failing probe. Its 95% interval is where the probes' P95 interval bounds cross it: the upper
bounds cross first (the low end), the lower bounds last (the high end). Each probe's P95
interval is the wider of the order-statistic interval (`core.numbers`) and a t-interval over
the P95s of its sub-windows, which also covers drift within the probe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from tritonload.core.numbers import (
    RunNumbers,
    percentile_interval_us,
    percentiles_us,
    t_quantile,
)

#: Stop when the bracket is within ±this share of its centre.
DEFAULT_PRECISION = 0.05
#: Sub-windows per probe for the between-sub-window part of the P95 interval.
SUB_WINDOWS = 4
CONFIDENCE = 0.95
#: A generative probe fails when fewer generations than this share of its rate completed in
#: its window: a server that prefills arrivals first keeps TTFT low while its decodes starve
#: (text_generator at 150/s offered: TTFT P95 10 ms, 0 generations/s finished).
KEEP_UP_SHARE = 0.5
#: What a search may judge, and how its lines name it.
METRICS = {"latency": "P95", "ttft": "TTFT P95", "itl": "ITL P95"}

FOUND = "found"
ABOVE_RANGE = "above range"  # every probe passed up to the highest rate allowed
BELOW_RANGE = "below range"  # even the lowest rate allowed failed
GENERATOR_BOUND = "generator-bound"  # the load generator could not offer the next rate
UNSETTLED = "unsettled"  # a bracket, but the budget ran out before ±precision


@dataclass(frozen=True)
class Probe:
    """One offered rate and what its steady window showed."""

    offered_rps: float
    throughput_rps: float
    requests: int
    p95_us: float
    p95_lo_us: float
    p95_hi_us: float
    error_rate: float
    goodput: float  # share of the window's requests that succeeded within the SLO
    trusted: bool = True
    reasons: tuple[str, ...] = ()
    run_dir: str = ""
    behind: bool = False  # the server fell behind the offered rate (`KEEP_UP_SHARE`)

    def passes(self, slo_p95_us: float, max_error_rate: float) -> bool:
        """P95 within the SLO (NaN, no successes, is not), errors in bounds, server keeping up."""
        return (self.p95_us <= slo_p95_us and not self.error_rate > max_error_rate
                and not self.behind)


def probe_of(numbers: RunNumbers, offered_rps: float, slo_p95_us: float,
             completions_ns: np.ndarray | None = None, *, judged_us: np.ndarray | None = None,
             good: int | None = None, behind: bool = False, trusted: bool = True,
             reasons: Sequence[str] = (), run_dir: str = "") -> Probe:
    """Judge a probe run from its steady-window numbers.

    ``completions_ns`` (completion times of the window's successful requests, in the order
    of the values judged) lets the P95 interval widen with the spread between sub-windows;
    without it only the order-statistic interval is used. The values judged are the request
    latencies, or ``judged_us`` (a generation's TTFTs or inter-token gaps); ``good`` is then
    the count of requests that met the objective, for the goodput.
    """
    total = numbers.total
    latencies = total.latencies_us if judged_us is None else judged_us
    p95 = float(percentiles_us(latencies, [95])[0])
    lo, hi = percentile_interval_us(latencies, 95, CONFIDENCE)
    if completions_ns is not None and len(latencies):
        lo, hi = _widen_by_sub_windows(latencies, completions_ns, numbers, p95, lo, hi)
    within = int(np.count_nonzero(latencies <= slo_p95_us)) if good is None else good
    goodput = within / total.requests if total.requests else math.nan
    error_rate = total.error_rate if total.requests else 1.0
    return Probe(float(offered_rps), float(total.throughput_rps), total.requests, p95, lo, hi,
                 float(error_rate), goodput, trusted, tuple(reasons), run_dir, behind)


def _widen_by_sub_windows(latencies: np.ndarray, completions_ns: np.ndarray,
                          numbers: RunNumbers, p95: float, lo: float, hi: float
                          ) -> tuple[float, float]:
    window = numbers.window
    edges = np.linspace(window.start_ns, window.end_ns, SUB_WINDOWS + 1)
    which = np.clip(np.searchsorted(edges, completions_ns, side="right") - 1, 0, SUB_WINDOWS - 1)
    parts = [latencies[which == i] for i in range(SUB_WINDOWS)]
    p95s = np.array([np.percentile(p, 95) for p in parts if len(p) >= 20])
    if len(p95s) < 2:
        return lo, hi
    half = t_quantile(1 - (1 - CONFIDENCE) / 2, len(p95s) - 1) * p95s.std(ddof=1) / math.sqrt(
        len(p95s))
    return max(min(lo, p95 - half), float(latencies.min())), max(hi, p95 + half)


@dataclass(frozen=True)
class SearchLimits:
    """Where a search may go and when it stops."""

    slo_p95_us: float
    max_error_rate: float = 0.01
    start_rps: float = 100.0
    min_rps: float = 1.0
    max_rps: float = 20_000.0
    precision: float = DEFAULT_PRECISION
    max_probes: int = 12
    metric: str = "latency"  # which P95 is judged: a key of METRICS

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric {self.metric!r}; choose one of {', '.join(METRICS)}")

    @property
    def judged(self) -> str:
        """The objective's name in lines: ``P95``, ``TTFT P95`` or ``ITL P95``."""
        return METRICS[self.metric]


def bracket(probes: Sequence[Probe], limits: SearchLimits
            ) -> tuple[Probe | None, Probe | None]:
    """The highest passing probe below the lowest failing one, and that failing probe.

    A pass above a failure is noise (the same rule as a load ladder's): it is not trusted.
    Probes the generator spoiled take no part.
    """
    usable = sorted((p for p in probes if p.trusted), key=lambda p: p.offered_rps)
    fails = [p for p in usable if not p.passes(limits.slo_p95_us, limits.max_error_rate)]
    high = fails[0] if fails else None
    passes = [p for p in usable if p.passes(limits.slo_p95_us, limits.max_error_rate)
              and (high is None or p.offered_rps < high.offered_rps)]
    return (passes[-1] if passes else None), high


def settled(low: Probe | None, high: Probe | None, precision: float) -> bool:
    """Whether the bracket is within ±precision of its centre."""
    if low is None or high is None:
        return False
    centre = (low.offered_rps + high.offered_rps) / 2
    return (high.offered_rps - low.offered_rps) / 2 <= precision * centre


def next_rate(probes: Sequence[Probe], limits: SearchLimits) -> float | None:
    """The next rate to offer, or None when the search is over (see the module's rules)."""
    if len(probes) >= limits.max_probes:
        return None
    if not probes:
        return _round(limits.start_rps)
    untrusted = sorted((p for p in probes if not p.trusted), key=lambda p: p.offered_rps)
    low, high = bracket(probes, limits)
    if untrusted and (high is None or untrusted[0].offered_rps <= high.offered_rps):
        return None  # the generator is the limit: going higher measures the client
    if settled(low, high, limits.precision):
        return None
    slo = limits.slo_p95_us
    if high is None:  # still below the knee: grow
        rate = low.offered_rps * (4.0 if low.p95_us < slo / 2 else 2.0)
        if low.offered_rps >= limits.max_rps:
            return None
        return _round(min(rate, limits.max_rps))
    if low is None:  # even the lowest rate failed: shrink
        if high.offered_rps <= limits.min_rps:
            return None
        return _round(max(high.offered_rps / 4.0, limits.min_rps))
    guess = _crossing(low.offered_rps, low.p95_us, high.offered_rps, high.p95_us, slo)
    span = high.offered_rps - low.offered_rps
    return _round(float(np.clip(guess, low.offered_rps + span / 4,
                                high.offered_rps - span / 4)))


def _round(rate: float) -> float:
    """Three significant figures: the rate a probe offers, as run.json and its name say it."""
    return float(f"{rate:.3g}") if rate >= 100 else round(rate, 1)


def _crossing(r0: float, v0: float, r1: float, v1: float, level: float) -> float:
    """Rate where the line through (r0, log v0) and (r1, log v1) reaches log ``level``."""
    if not (v0 > 0 and v1 > 0 and math.isfinite(v0) and math.isfinite(v1)) or v1 <= v0:
        return (r0 + r1) / 2
    t = (math.log(level) - math.log(v0)) / (math.log(v1) - math.log(v0))
    return r0 + min(max(t, 0.0), 1.0) * (r1 - r0)


@dataclass(frozen=True)
class Knee:
    """A search's answer: capacity within the SLO, its 95% interval, and what backs it."""

    status: str
    capacity_rps: float
    capacity_lo_rps: float
    capacity_hi_rps: float
    p95_us: float  # at the highest passing probe
    goodput: float  # at the highest passing probe
    at_rps: float  # that probe's offered rate
    explanation: str
    probes: tuple[Probe, ...] = field(default=())

    def as_dict(self) -> dict:
        """JSON-ready (NaN stays NaN; the writer decides)."""
        out = asdict(self)
        out["probes"] = [asdict(p) for p in self.probes]
        return out


def knee(probes: Sequence[Probe], limits: SearchLimits) -> Knee:
    """The capacity a finished (or stopped) search supports."""
    probes = tuple(sorted(probes, key=lambda p: p.offered_rps))
    slo = limits.slo_p95_us
    low, high = bracket(probes, limits)
    nan = math.nan
    slo_text = f"{limits.judged} ≤ {slo / 1000:g} ms"
    if low is None:
        status = GENERATOR_BOUND if probes and not any(p.trusted for p in probes) else BELOW_RANGE
        why = ("the load generator could not offer even the lowest rate"
               if status == GENERATOR_BOUND else
               f"even {probes[0].offered_rps:g} req/s broke {slo_text}" if probes else
               "no probe ran")
        return Knee(status, nan, nan, nan, nan, nan, nan, f"No capacity: {why}.", probes)
    base = dict(p95_us=low.p95_us, goodput=low.goodput, at_rps=low.offered_rps, probes=probes)
    if high is None:
        untrusted = [p for p in probes if not p.trusted and p.offered_rps > low.offered_rps]
        if untrusted:
            why = "; ".join(untrusted[0].reasons) or "the generator was the limit"
            return Knee(GENERATOR_BOUND, low.offered_rps, low.offered_rps, nan, **base,
                        explanation=(f"At least {low.offered_rps:.0f} req/s within {slo_text}; "
                                     f"at {untrusted[0].offered_rps:.0f} req/s {why}, so the "
                                     "knee lies beyond what this generator can offer."))
        return Knee(ABOVE_RANGE, low.offered_rps, low.offered_rps, nan, **base,
                    explanation=(f"At least {low.offered_rps:.0f} req/s: {limits.judged} "
                                 "stayed within the SLO up to the highest rate allowed."))
    ordered = [p for p in probes if p.trusted]
    estimate = _first_crossing(ordered, "p95_us", slo)
    if high.p95_us <= slo:  # the failing probe failed on errors: no latency crossing
        estimate = low.offered_rps
    lo = min(_first_crossing(ordered, "p95_hi_us", slo), estimate)
    hi = max(_first_crossing(ordered, "p95_lo_us", slo), estimate)
    status = FOUND if settled(low, high, limits.precision) else UNSETTLED
    reason = (f"{limits.judged} {high.p95_us / 1000:.1f} ms" if high.p95_us > slo
              else f"only {high.throughput_rps:.0f} req/s finished" if high.behind
              else f"error rate {high.error_rate:.1%}")
    explanation = (f"{estimate:.0f} req/s (95% interval {lo:.0f}–{hi:.0f}): {limits.judged} was "
                   f"{low.p95_us / 1000:.1f} ms at {low.offered_rps:.0f} req/s and {reason} at "
                   f"{high.offered_rps:.0f} req/s; {len(probes)} probes.")
    spoiled = [p for p in probes if not p.trusted
               and low.offered_rps < p.offered_rps <= high.offered_rps]
    if status == UNSETTLED and spoiled:
        explanation += (f" The bracket is wider than ±{limits.precision:.0%}: at "
                        f"{spoiled[0].offered_rps:.0f} req/s {'; '.join(spoiled[0].reasons)}, "
                        "so the search stopped there.")
    elif status == UNSETTLED:
        explanation += f" The bracket is wider than ±{limits.precision:.0%}: the budget ran out."
    return Knee(status, estimate, lo, hi, explanation=explanation, **base)


def _first_crossing(probes: Sequence[Probe], column: str, slo: float) -> float:
    """Rate where ``column`` first rises above ``slo`` (interpolated), walking up the rates.

    Before the first probe it is that probe's rate (the data cannot say lower); if the
    column never crosses, the highest rate probed.
    """
    previous = None
    for p in probes:
        value = getattr(p, column)
        if not value <= slo:
            if previous is None:
                return p.offered_rps
            return _crossing(previous.offered_rps, getattr(previous, column),
                             p.offered_rps, value, slo)
        previous = p
    return probes[-1].offered_rps if probes else math.nan
