"""`tritonload run`: one scenario, headless, one run directory, SLO verdicts, optional report."""

from __future__ import annotations

import argparse
from pathlib import Path

from tritonload.analysis.cli import write_report_for
from tritonload.cli.commands.process_options import (
    add_process_options,
    check_worker_args,
    processes_from_args,
)
from tritonload.cli.commands.target_options import add_target_options, target_from_args
from tritonload.cli.console import console, print_table
from tritonload.cli.headless import LocustRun, LocustWorker, parse_duration, resolve_scenario
from tritonload.cli.signals import sigterm_raises_interrupt
from tritonload.core.errors import UsageError
from tritonload.core.numbers import RunNumbers, run_numbers
from tritonload.core.options import add_metrics_option, add_slo_options, add_user_options
from tritonload.core.rundir import new_run_id, read_arrivals, read_run_json
from tritonload.core.slo import BREACH_EXIT_CODE, evaluate, parse_slos
from tritonload.core.tokens import TokenNumbers, run_tokens
from tritonload.core.validity import judge


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """Options shaping the load, passed through to the scenario's users."""
    group = parser.add_argument_group("load")
    group.add_argument("-u", "--users", type=int, default=16, help="Locust users (default 16)")
    group.add_argument("-t", "--duration", default="60s",
                       help="run time, e.g. 60s, 2m (default 60s)")
    add_user_options(group)
    group.add_argument("--error-backoff", type=float, default=None, metavar="SECONDS",
                       help="after a failed request, wait this long before the next one, "
                       "doubling while failures go on (at most 5 s); default off")
    add_metrics_option(group)
    group.add_argument("--user-class", action="append", default=[], metavar="NAME",
                       help="run only these user classes of the scenario; repeatable")


def arrival_line(totals: dict[str, int]) -> str:
    """Open loop: how well the generator kept to its schedule."""
    scheduled = max(totals["scheduled"], 1)
    line = (f"open loop: {totals['scheduled']} sends scheduled, {totals['late']} late "
            f"({totals['late'] / scheduled:.1%}), {totals['dropped']} dropped "
            f"({totals['dropped'] / scheduled:.1%})")
    if totals["dropped"]:
        line += " (the generator could not keep up: raise --max-in-flight or use more users)"
    return line


def load_options(args: argparse.Namespace) -> list[str]:
    """The scenario options (tritonload's Locust options) the arguments ask for."""
    options: list[str] = []
    for flag in ("mode", "max_in_flight", "rate", "arrival", "mix", "llm_mix", "batch_dim",
                 "error_backoff", "metrics_url", "shared_memory", "output_shared_memory_size",
                 "isl", "osl", "num_system_prompts", "system_prompt_length", "prompts"):
        value = getattr(args, flag)
        if value is not None:
            options += [f"--{flag.replace('_', '-')}", str(value)]
    for flag in ("payload", "shape", "header"):
        for value in getattr(args, flag, []):
            options += [f"--{flag}", value]
    if args.timeout is not None:
        options += ["--request-timeout", str(args.timeout)]
    for flag in ("validate", "token_ids"):
        if getattr(args, flag, None):
            options.append(f"--{flag.replace('_', '-')}")
    return options


def run_worker(args: argparse.Namespace, scenario: Path) -> int:
    """``--worker``: Locust worker process(es) for the master at --master-host."""
    check_worker_args(args)
    return LocustWorker(scenario, args.master_host, args.master_port, args.processes,
                        args.user_class).execute()


def generation_line(tokens: TokenNumbers) -> str:
    """The LLM users' generations in one line: TTFT, ITL, tokens per second."""
    return (f"generations: {tokens.ok} ok of {tokens.generations}, "
            f"TTFT P50 {tokens.percentile_ms('ttft', 50):.1f} ms P95 "
            f"{tokens.percentile_ms('ttft', 95):.1f} ms, ITL P50 "
            f"{tokens.percentile_ms('itl', 50):.1f} ms P95 {tokens.percentile_ms('itl', 95):.1f}"
            f" ms, {tokens.output_tokens_per_s:.0f} output tokens/s, "
            f"{tokens.request_rps:.2f} generations/s")


def numbers_table(numbers: RunNumbers) -> list[dict[str, str]]:
    """Per model and protocol: requests, errors, req/s and exact P50/P95/P99 (ms)."""
    rows = []
    for (model, protocol), group in numbers.groups.items():
        p50, p95, p99 = (group.percentile_ms(q) for q in (50, 95, 99))
        rows.append({"model": model, "protocol": protocol, "requests": str(group.requests),
                     "errors": str(group.errors), "req/s": f"{group.throughput_rps:.1f}",
                     "P50 ms": f"{p50:.3f}", "P95 ms": f"{p95:.3f}", "P99 ms": f"{p99:.3f}"})
    return rows


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `run`."""
    parser = sub.add_parser(
        "run",
        help="run one scenario headless and judge SLOs",
        description="Run a locustfile headless against --url (or the embedded server), write "
        "one run directory, print exact per-model percentiles and the SLO verdicts. Exit codes: "
        "0 all SLOs hold, 2 bad input, 3 an SLO was breached.",
    )
    parser.add_argument("scenario", nargs="?", default="mixed_models",
                        help="locustfile path or name in locustfiles/ (default mixed_models)")
    parser.add_argument("--run-dir", default=None, help="run directory (default runs/<id>-<name>)")
    parser.add_argument("--report", default=None, metavar="DIR",
                        help="also write the analysis report (HTML, MD, JSON) here")
    add_load_options(parser)
    add_slo_options(parser.add_argument_group("SLO gates (exit code 3 on a breach)"))
    add_target_options(parser)
    add_process_options(parser, multi_host=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run, summarise, judge (or, with --worker, send load for a master)."""
    scenario = resolve_scenario(args.scenario)
    if args.worker:
        return run_worker(args, scenario)
    processes = processes_from_args(args)
    slos = parse_slos(args.slo, args.min_rps)
    duration = parse_duration(args.duration)
    if args.users < 1:
        raise UsageError("--users must be >= 1")
    run_dir = Path(args.run_dir or Path("runs") / f"{new_run_id()}-{scenario.stem}")
    if run_dir.exists():
        raise UsageError(f"run directory {run_dir} already exists")
    with sigterm_raises_interrupt(), target_from_args(args) as target:
        job = LocustRun(scenario, target, run_dir, args.users, duration,
                        user_classes=args.user_class, options=load_options(args),
                        processes=processes)
        if processes.expect_workers:
            console.print(f"master: waiting up to {processes.wait_s:g} s for "
                          f"{processes.expect_workers} worker(s) on port {processes.port}",
                          markup=False)
        code = job.execute(label=f"{scenario.stem} ({args.users} users)")
    if code == 2 or not (run_dir / "run.json").exists():
        return 2
    numbers = run_numbers(run_dir, by=("model", "protocol"))
    console.print(f"steady window: {numbers.describe_window()}", markup=False)
    print_table(numbers_table(numbers), title=f"{scenario.stem}: exact latencies ({run_dir})")
    meta = read_run_json(run_dir)
    arrivals = meta.get("arrivals")
    if arrivals:
        console.print(arrival_line(arrivals), style="bold yellow" if arrivals["dropped"] else None)
    validity = judge(meta, numbers.window, read_arrivals(run_dir), numbers.total)
    for reason in validity.reasons:
        console.print(f"warning: invalid run: {reason}", style="bold yellow", markup=False)
    tokens = run_tokens(run_dir)
    if tokens is not None:
        console.print(generation_line(tokens), markup=False)
    verdicts = evaluate(slos, numbers.total, tokens)
    for verdict in verdicts:
        console.print(verdict.line(), style=None if verdict.ok else "bold red")
    if args.report:
        _, paths = write_report_for([run_dir], Path(args.report))
        console.print(f"report: {paths['html']}")
    return BREACH_EXIT_CODE if not all(v.ok for v in verdicts) else 0
