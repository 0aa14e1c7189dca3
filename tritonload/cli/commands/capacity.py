"""`tritonload capacity`: per model, the highest open-loop rate whose P95 stays within the SLO.

A generative (decoupled) model is searched under its token objectives instead: one search
per objective given (``--slo-ttft-ms``, ``--slo-itl-ms``), sent by the LLM users with the
prompts ``--isl``/``--osl`` describe. Which models stream is read from their served configs
at the start, so the same ``--models`` list can hold both kinds.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path

from tritonload.analysis.capacity import DEFAULT_HEADROOM, replicas_needed
from tritonload.analysis.cli import write_report_for
from tritonload.cli.capacity import ProbePlan, Search, run_searches
from tritonload.cli.commands.process_options import add_process_options, processes_from_args
from tritonload.cli.commands.target_options import add_target_options, target_from_args
from tritonload.cli.console import console, print_table
from tritonload.cli.headless import parse_duration
from tritonload.cli.signals import sigterm_raises_interrupt
from tritonload.core.config import Target
from tritonload.core.errors import UsageError
from tritonload.core.knee import DEFAULT_PRECISION, Knee, SearchLimits
from tritonload.core.options import add_generation_options, positive_number
from tritonload.triton.admin import TritonAdmin
from tritonload.triton.served import served_model

DEFAULT_MODELS = "text_classifier,image_classifier,recommender"


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """The SLO and the search's limits (shared with `bench`)."""
    group = parser.add_argument_group("capacity search")
    group.add_argument("--slo-p95-ms", type=positive_number, default=50.0,
                       help="the P95 objective in ms (default 50)")
    group.add_argument("--slo-ttft-ms", type=positive_number, default=None,
                       help="a generative model's time-to-first-token P95 objective in ms")
    group.add_argument("--slo-itl-ms", type=positive_number, default=None,
                       help="a generative model's inter-token-latency P95 objective in ms "
                       "(with --slo-ttft-ms: one search each, the lower capacity binds)")
    group.add_argument("--max-error-rate", type=float, default=0.01,
                       help="highest acceptable error rate of a probe (default 0.01)")
    group.add_argument("--start-rps", type=positive_number, default=100.0,
                       help="first rate probed (default 100 req/s)")
    group.add_argument("--max-rps", type=positive_number, default=20_000.0,
                       help="never offer more than this (default 20000 req/s)")
    group.add_argument("--precision", type=positive_number, default=DEFAULT_PRECISION,
                       help="stop when the bracket is within ±this share (default 0.05)")
    group.add_argument("--probe-warmup", type=float, default=1.0, metavar="SECONDS",
                       help="warm-up of each probe, dropped (default 1)")
    group.add_argument("--probe-window", type=positive_number, default=2.0, metavar="SECONDS",
                       help="measured window of each probe (default 2)")
    group.add_argument("--target-rps", type=positive_number, default=None,
                       help="plan replicas for this peak rate")
    group.add_argument("--headroom", type=float, default=DEFAULT_HEADROOM,
                       help=f"share of each replica kept free (default {DEFAULT_HEADROOM})")


def token_limits(limits: SearchLimits, args: argparse.Namespace) -> list[SearchLimits]:
    """A generative model's limits: one per token objective given (exit 2 when none is)."""
    objectives = {"ttft": args.slo_ttft_ms, "itl": args.slo_itl_ms}
    chosen = [dataclasses.replace(limits, metric=metric, slo_p95_us=ms * 1000.0)
              for metric, ms in objectives.items() if ms is not None]
    if not chosen:
        raise UsageError("a generative model streams tokens: give --slo-ttft-ms and/or "
                         "--slo-itl-ms for its capacity search")
    return chosen


def generation_options(args: argparse.Namespace) -> tuple[str, ...]:
    """The LLM users' prompt options given, passed on to each generative probe."""
    out: list[str] = []
    for name in ("isl", "osl", "num_system_prompts", "system_prompt_length", "prompts"):
        value = getattr(args, name, None)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    if getattr(args, "token_ids", None):
        out.append("--token-ids")
    return tuple(out)


def limits_from_args(args: argparse.Namespace) -> SearchLimits:
    """The search limits the flags ask for, validated."""
    if not 0 <= args.max_error_rate <= 1:
        raise UsageError(f"--max-error-rate must be in [0, 1], got {args.max_error_rate}")
    if args.precision >= 0.5:
        raise UsageError(f"--precision must be below 0.5, got {args.precision}")
    if args.start_rps > args.max_rps:
        raise UsageError("--start-rps must not exceed --max-rps")
    if not 0 <= args.headroom < 1:
        raise UsageError(f"--headroom must be in [0, 1), got {args.headroom}")
    return SearchLimits(slo_p95_us=args.slo_p95_ms * 1000.0, max_error_rate=args.max_error_rate,
                        start_rps=args.start_rps, max_rps=args.max_rps,
                        precision=args.precision)


def plan_from_args(args: argparse.Namespace) -> ProbePlan:
    """Probe warm-up and window, and the processes that send each probe."""
    if args.probe_warmup < 0:
        raise UsageError("--probe-warmup must be >= 0")
    return ProbePlan(args.probe_warmup, args.probe_window, processes_from_args(args))


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `capacity`."""
    parser = sub.add_parser(
        "capacity",
        help="find each model's capacity within a P95 SLO (open-loop knee search)",
        description="For each model (and protocol), offer Poisson open-loop rates and search for "
        "the highest one whose P95, counted from the scheduled send time, stays within "
        "--slo-p95-ms with errors under --max-error-rate: bracket the knee, then narrow it "
        "until it is within ±--precision. Prints the capacity with a 95% interval, the P95 "
        "and goodput there, and replicas for --target-rps. Searches run interleaved; each "
        "writes OUT/<model>-<protocol>/search.json and one run directory per probe; then "
        "OUT/report.html, report.md and report.json. --models names "
        f"the models to search (default {DEFAULT_MODELS}); the embedded server then serves "
        "only those.",
    )
    parser.add_argument("--protocols", default="grpc", help="grpc, http or grpc,http")
    parser.add_argument("-o", "--output", default=None,
                        help="output directory (default reports/capacity-<time>)")
    parser.add_argument("--budget", default="10m",
                        help="time budget of all searches, e.g. 90s, 5m (default 10m)")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --output")
    add_search_options(parser)
    add_generation_options(parser.add_argument_group("generative models' prompts"))
    add_target_options(parser)
    add_process_options(parser)
    parser.set_defaults(func=run)


def fresh_output(path: str | None, default_prefix: str, force: bool) -> Path:
    """The output directory, emptied when --force allows it."""
    out = Path(path or f"reports/{default_prefix}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise UsageError(f"output {out} is not empty; use --force to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def run(args: argparse.Namespace) -> int:
    """Search, then print the answers."""
    limits = limits_from_args(args)
    timing = plan_from_args(args)
    budget = parse_duration(args.budget)
    args.models = args.models or DEFAULT_MODELS
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    if not models:
        raise UsageError("--models: name at least one model")
    out = fresh_output(args.output, "capacity", args.force)
    with sigterm_raises_interrupt(), target_from_args(args) as target:
        searches = searches_of(models, protocols, limits, out, streaming_models(target, models),
                               args)
        console.print(f"capacity: {len(searches)} searches within {budget:g} s → {out}")
        knees = run_searches(searches, target, timing, budget)
    print_table([knee_row(s, k, args.target_rps, args.headroom)
                 for s, k in zip(searches, knees, strict=True)],
                title="capacity within each objective")
    for search, k in zip(searches, knees, strict=True):
        console.print(f"{search.label}: {k.explanation}", markup=False)
    _, paths = write_report_for([], out, capacity_dir=out, slo_p95_ms=args.slo_p95_ms,
                                target_rps=args.target_rps, headroom=args.headroom)
    console.print(f"report: {paths['html']}  ({paths['md'].name}, {paths['json'].name})")
    return 0


def streaming_models(target: Target, models: list[str]) -> set[str]:
    """The models whose served config is decoupled (a token stream per request)."""
    with TritonAdmin(target) as admin:
        return {m for m in models if served_model(admin, m)[0].decoupled}


def searches_of(models: list[str], protocols: list[str], limits: SearchLimits, out: Path,
                streaming: set[str], args: argparse.Namespace) -> list[Search]:
    """One search per model × protocol, and per token objective for a generative model."""
    searches = []
    for model in models:
        for protocol in protocols:
            if model not in streaming:
                searches.append(Search(model, protocol, limits, out))
                continue
            for judged in token_limits(limits, args):
                searches.append(Search(model, protocol, judged, out,
                                       label=f"{model}-{protocol}-{judged.metric}",
                                       options=generation_options(args)))
    return searches


def knee_row(search: Search, k: Knee, target_rps: float | None,
             headroom: float) -> dict[str, str]:
    """One line of the capacity table."""
    slo_ms = search.limits.slo_p95_us / 1000.0
    row = {"search": search.label, "objective": f"{search.limits.judged} ≤ {slo_ms:g} ms",
           "status": k.status,
           "capacity req/s": f"{k.capacity_rps:.0f}" if k.capacity_rps == k.capacity_rps else "-",
           "95% interval": (f"{k.capacity_lo_rps:.0f}–{k.capacity_hi_rps:.0f}"
                            if k.capacity_hi_rps == k.capacity_hi_rps else "-"),
           "P95 ms": f"{k.p95_us / 1000:.1f} @ {k.at_rps:.0f}" if k.at_rps == k.at_rps else "-",
           "goodput": f"{k.goodput:.1%}" if k.goodput == k.goodput else "-",
           "probes": str(len(k.probes))}
    if target_rps and k.capacity_rps > 0:
        plan = replicas_needed(target_rps, k.capacity_rps, headroom)
        row["replicas"] = f"{plan.replicas} ({plan.arithmetic})"
    return row
