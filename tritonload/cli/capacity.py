"""Run capacity searches (`tritonload.core.knee`) against a target, one probe per Locust child.

Searches run interleaved: each round gives every unfinished search its next probe, so drift
over the minutes a bench takes (other tenants, thermal state, a slow page cache) spreads over
all models instead of biasing the one searched last. A probe is a short open-loop Poisson run
of one model (``locustfiles/bench.py``, one user): a child start costs about 1.4 s on this
2-core box, so a 1 s warm-up plus a 2 s window makes a probe about 4.4 s, and a search of
6–9 probes about half a minute.

A generative model's search (`Search.generative`) sends its probes from the LLM users of
``locustfiles/llm.py`` and judges the TTFT or ITL P95 its limits name; its probes allow ten
seconds of generations in flight, since one generation lasts its whole token stream.

Each search writes ``<out>/<label>/search.json`` (limits, probes, the knee) next to its probe
run directories ``<out>/<label>/r<rate>/``; the report reads search.json.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tritonload.cli.console import console
from tritonload.cli.headless import LOCUSTFILES, LocustRun, Processes
from tritonload.core.config import Target
from tritonload.core.errors import AlreadyReported, UsageError
from tritonload.core.knee import KEEP_UP_SHARE, Knee, Probe, SearchLimits, knee, next_rate, probe_of
from tritonload.core.numbers import completion_ns, in_window, numbers_of, run_window
from tritonload.core.rundir import (
    json_ready,
    read_arrivals,
    read_records,
    read_run_json,
    write_json_atomic,
)
from tritonload.core.schema import GENERATION_COLUMNS, SEARCH_JSON
from tritonload.core.tokens import summarize_tokens
from tritonload.core.validity import CLIENT_CPU_LIMIT, LATE_OR_DROPPED_LIMIT, judge
from tritonload.server.fleet import NOBATCH_SUFFIX

#: Warm-up of a search's first probe: a model that just loaded answered its first second of
#: requests at 100 req/s with a P95 of 132 ms, against 14 ms a few seconds later.
FIRST_WARMUP_S = 3.0
#: Requests in flight a probe allows: enough for four SLOs' worth of its rate.
IN_FLIGHT_PER_SLO = 4
#: A generative probe's in-flight allowance, in seconds of its rate: a generation of 64
#: tokens lasts about 1.3 s on the demo's text_generator, far longer than its TTFT objective.
GENERATION_IN_FLIGHT_S = 10.0


@dataclass(frozen=True)
class ProbePlan:
    """How each probe runs: its warm-up and window, and the Locust processes that send it."""

    warmup_s: float = 1.0
    window_s: float = 2.0
    processes: Processes = Processes()

    @property
    def duration_s(self) -> float:
        """Load time of a probe: the warm-up, then the window."""
        return self.warmup_s + self.window_s


@dataclass
class Search:
    """One model's search over one protocol, against the server as it is configured now."""

    model: str
    protocol: str
    limits: SearchLimits
    out: Path
    label: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)
    options: tuple[str, ...] = ()  # more probe options (the LLM users' --isl, --osl...)

    def __post_init__(self) -> None:
        if self.protocol not in ("grpc", "http"):
            raise UsageError(f"capacity: protocol {self.protocol!r}; choose grpc or http")
        self.label = self.label or f"{self.model}-{self.protocol}"

    @property
    def generative(self) -> bool:
        """A token-streaming model's search: judged on TTFT or ITL, probed by the LLM users."""
        return self.limits.metric != "latency"

    @property
    def directory(self) -> Path:
        """Where the search writes."""
        return self.out / self.label

    def next_rate(self) -> float | None:
        """The next rate to probe, or None when done."""
        return next_rate(self.probes, self.limits)

    def job(self, target: Target, rate: float, timing: ProbePlan) -> LocustRun:
        """The open-loop probe at ``rate``; the first one warms a cold model up for longer."""
        if not self.probes:
            timing = dataclasses.replace(timing, warmup_s=max(timing.warmup_s,
                                                               FIRST_WARMUP_S))
        allowance_s = (GENERATION_IN_FLIGHT_S if self.generative
                       else self.limits.slo_p95_us / 1e6 * IN_FLIGHT_PER_SLO)
        in_flight = int(min(max(math.ceil(rate * allowance_s), 64), 2048))
        mix = "--llm-mix" if self.generative else "--mix"
        options = [mix, f"{self.model}:1", "--mode", "open", "--rate", f"{rate:g}",
                   "--arrival", "poisson", "--max-in-flight", str(in_flight),
                   "--warmup", f"{timing.warmup_s:g}", "--tag", f"search={self.label}",
                   "--request-timeout", f"{target.timeout_s:g}", *self.options]
        for name, value in {**self.tags, "probe_rps": f"{rate:g}"}.items():
            options += ["--tag", f"{name}={value}"]
        for name, value in target.headers.items():
            options += ["--header", f"{name}={value}"]
        if self.generative:
            locustfile = LOCUSTFILES / "llm.py"
            user_class = "LlmUser" if self.protocol == "grpc" else "HttpLlmUser"
        else:
            locustfile = LOCUSTFILES / "bench.py"
            user_class = "Grpc" if self.protocol == "grpc" else "Http"
        # One user per process: the rate is split over the users, and each worker needs one.
        return LocustRun(locustfile, target, self.probe_dir(rate),
                         max(1, timing.processes.workers), timing.duration_s,
                         user_classes=[user_class], options=options,
                         processes=timing.processes)

    def probe_dir(self, rate: float) -> Path:
        """Run directory of the probe at ``rate`` (a repeated rate gets a suffix)."""
        base = self.directory / f"r{rate:g}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return path

    def record(self, run_dir: Path, rate: float) -> Probe:
        """Judge a finished probe and remember it."""
        probe = judge_probe(run_dir, rate, self.limits)
        self.probes.append(probe)
        return probe

    def result(self) -> Knee:
        """The knee of the probes so far."""
        return knee(self.probes, self.limits)

    def write(self) -> Path:
        """Write search.json."""
        document = {"format": "tritonload-capacity-search", "version": 1, "label": self.label,
                    "model": self.model, "protocol": self.protocol, "tags": self.tags,
                    "generative": self.generative,
                    "limits": vars(self.limits), "knee": self.result().as_dict()}
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / SEARCH_JSON
        write_json_atomic(path, json_ready(document))
        return path


def judge_probe(run_dir: Path, offered_rps: float, limits: SearchLimits) -> Probe:
    """A probe's numbers and trust, from its run directory."""
    slo_p95_us = limits.slo_p95_us
    meta = read_run_json(run_dir)
    columns = ["intended_start_ns", "latency_us", "ok"]
    if limits.metric != "latency":
        columns += list(GENERATION_COLUMNS)
    records = read_records(run_dir, columns)
    window = run_window(meta, records)
    numbers = numbers_of(records, window, int(meta.get("started_ns") or 0))
    steady = records[in_window(records["intended_start_ns"].to_numpy(),
                               records["latency_us"].to_numpy(), window)]
    ok = steady[steady["ok"]]
    done = completion_ns(ok["intended_start_ns"].to_numpy(), ok["latency_us"].to_numpy())
    # The same window and numbers the probe is judged on; no second read of the run.
    validity = judge(meta, window, read_arrivals(run_dir), numbers.total)
    judged: dict = {}
    if limits.metric != "latency":
        done, judged = _token_objective(steady, window.duration_s, done, limits)
        judged["behind"] = numbers.total.throughput_rps < KEEP_UP_SHARE * offered_rps
    probe = probe_of(numbers, offered_rps, slo_p95_us, done, run_dir=str(run_dir), **judged)
    # The generator's own failures make a probe say nothing about the server. A saturated
    # client always does: it smooths and lowers the load the server sees. Dropped sends do
    # when the probe passed (the server was judged on less than the rate offered); when it
    # failed, the server's backlog filled the in-flight slots (four SLOs' worth of requests).
    # Late sends alone do not: latency counts from the scheduled time, so lateness can only
    # make a probe fail, never pass (run validity still reports them).
    spoiled = []
    if validity.client_cpu_share >= CLIENT_CPU_LIMIT:  # NaN (no samples) is not
        spoiled.append(f"the load generator used {validity.client_cpu_share:.0%} of a core")
    if validity.dropped_share > LATE_OR_DROPPED_LIMIT and probe.passes(slo_p95_us, 1.0):
        spoiled.append(f"{validity.dropped_share:.1%} of sends were dropped")
    return dataclasses.replace(probe, trusted=not spoiled, reasons=tuple(spoiled))


def _token_objective(steady: pd.DataFrame, duration_s: float, done: np.ndarray,
                     limits: SearchLimits) -> tuple[np.ndarray, dict]:
    """A generative probe's judged values: TTFTs or pooled gaps, with their completions.

    Also the count of generations that met the objective (`tritonload.core.tokens`' rules).
    """
    tokens = summarize_tokens(steady, duration_s)
    limit = limits.slo_p95_us
    if limits.metric == "ttft":
        return done, {"judged_us": tokens.ttft_us,
                      "good": int(np.count_nonzero(tokens.ttft_us <= limit))}
    gaps = [0 if g is None else len(g) for g in steady[steady["ok"]]["itl_us"]]
    return np.repeat(done, gaps), {"judged_us": tokens.itl_us,
                                   "good": int(np.count_nonzero(~(tokens.mean_itl_us > limit)))}


def run_searches(searches: Sequence[Search], target: Target, timing: ProbePlan,
                 budget_s: float | None = None) -> list[Knee]:
    """Probe every search, interleaved, until each is settled or the budget is spent.

    Returns the knees in the order of ``searches``; every search.json is written as it goes.
    """
    started = time.monotonic()
    pending = list(searches)
    probe_s = timing.duration_s + 1.5
    while pending:
        for search in list(pending):
            rate = search.next_rate()
            over = budget_s is not None and time.monotonic() - started + probe_s > budget_s
            if rate is None or over:
                pending.remove(search)
                search.write()
                continue
            run_dir = search.probe_dir(rate)
            label = f"capacity {search.label} @ {rate:.0f} req/s"
            code = search.job(target, rate, timing).execute(label=label)
            if code == 2 or not (run_dir / "run.json").exists():
                raise AlreadyReported()  # the child said why, in one line
            probe = search.record(run_dir, rate)
            console.print(_probe_line(search, probe), markup=False)
            search.write()
    return [s.result() for s in searches]


def _probe_line(search: Search, probe: Probe) -> str:
    ok = probe.passes(search.limits.slo_p95_us, search.limits.max_error_rate)
    verdict = "within SLO" if ok else "breaks SLO"
    if probe.behind:
        verdict += f" (fewer than {KEEP_UP_SHARE:.0%} of the rate finished)"
    if not probe.trusted:
        verdict = "not trusted: " + "; ".join(probe.reasons)
    return (f"  {search.label}: {probe.offered_rps:.0f} req/s offered → "
            f"{probe.throughput_rps:.0f} served, {search.limits.judged} "
            f"{probe.p95_us / 1000:.1f} ms "
            f"[{probe.p95_lo_us / 1000:.1f}, {probe.p95_hi_us / 1000:.1f}], "
            f"errors {probe.error_rate:.1%}: {verdict}")


def searches_for(models: Sequence[str], protocols: Sequence[str], batching: Sequence[str],
                 limits: SearchLimits, out: Path, config: str = "current") -> list[Search]:
    """One search per model × protocol × batching (off: the model's ``_nobatch`` twin)."""
    searches = []
    for model in models:
        for protocol in protocols:
            for mode in batching:
                name = model + (NOBATCH_SUFFIX if mode == "off" else "")
                suffix = "" if config == "current" else f"-{config}"
                searches.append(Search(name, protocol, limits, out,
                                       label=f"{name}-{protocol}{suffix}",
                                       tags={"base_model": model, "batching": mode,
                                             "config": config}))
    return searches
