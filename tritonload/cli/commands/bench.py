"""`tritonload bench`: capacity searches, the comparison matrix, a batching check, the report.

Three stages on the embedded server (or ``--url``), then one report:

1. **Capacity** (`tritonload.cli.capacity`): per model of the mix, with batching on and off
   (the ``_nobatch`` twin), the highest open-loop rate within the P95 SLO, searched
   interleaved.
2. **Comparisons** (`tritonload.cli.bench`): the closed-loop matrix, every cell repeated in
   seeded interleaved rounds: sync vs async in both framings, gRPC vs HTTP.
3. **Batching check** (`tritonload.cli.recommendations`): a recommended config per batching
   model from its probes, checked by a second search on a server restarted with it.

``--demo`` is the preset `make demo` runs: gRPC, one level of 4 users, three rounds, short
windows; the capacity stage and the check are what its headline needs.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

from tritonload.analysis.cli import write_report_for
from tritonload.cli.bench import DEFAULT_MIX, Matrix
from tritonload.cli.capacity import run_searches, searches_for
from tritonload.cli.commands.capacity import (
    add_search_options,
    fresh_output,
    limits_from_args,
    plan_from_args,
)
from tritonload.cli.commands.process_options import add_process_options
from tritonload.cli.commands.target_options import add_target_options, target_from_args
from tritonload.cli.console import console, print_table
from tritonload.cli.headless import Processes, parse_duration
from tritonload.cli.headline import headline_tables
from tritonload.cli.recommendations import recommend_and_check
from tritonload.cli.signals import sigterm_raises_interrupt
from tritonload.core.config import Target
from tritonload.core.errors import UsageError
from tritonload.core.mix import ModelMix
from tritonload.core.options import positive_int


def _csv(kind: type) -> callable:
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list: {text!r}") from None

    return parse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `bench`."""
    parser = sub.add_parser(
        "bench",
        help="capacity per model, the comparison matrix, a checked batching config, a report",
        description="Three stages, then one report. (1) Capacity: per model of the mix, with "
        "batching on and off (its _nobatch twin), the highest open-loop rate whose P95 stays "
        "within --slo-p95-ms, searched interleaved (OUT/capacity/<model>-<protocol>/). (2) "
        "Comparisons: a matrix of headless cells (protocol × mode × batching × level), each "
        "with a warm-up and perf_analyzer's stability rule, repeated in interleaved rounds "
        "(every cell once per round, in a seeded shuffled order; OUT/runs/<cell>-rep<r>/); "
        "sync and async are compared at equal requests in flight and at equal users. (3) "
        "Batching check: a recommended config per batching model from its probes, checked by "
        "searching again on the embedded server restarted with it. Then OUT/report.html, "
        "report.md and report.json, opening with the answer. Flags override the --demo "
        "preset, which overrides the --matrix file, which overrides the defaults.",
    )
    parser.add_argument("-o", "--output", default=None,
                        help="output directory (default reports/bench-<time>)")
    parser.add_argument("--matrix", default=None, help="TOML or YAML file with matrix fields")
    parser.add_argument("--protocols", type=_csv(str), help="default grpc,http")
    parser.add_argument("--modes", type=_csv(str), help="default sync,async")
    parser.add_argument("--batching", type=_csv(str), help="on,off (default both)")
    parser.add_argument("--levels", type=_csv(int),
                        help="requests in flight per cell; users, in the equal-users framing "
                        "(default 1,4,16)")
    parser.add_argument("--rates", type=_csv(float),
                        help="open loop instead: total requests/s per cell, e.g. 50,100,200")
    parser.add_argument("--mix", help=f"model mix (default {DEFAULT_MIX})")
    parser.add_argument("--max-in-flight", type=int, help="per async user (default 8)")
    parser.add_argument("--warmup", dest="warmup_s", type=float, help="seconds (default 2)")
    parser.add_argument("--window", dest="window_s", type=float, help="seconds (default 2)")
    parser.add_argument("--max-windows", type=int, help="default 6")
    parser.add_argument("--repetitions", type=int,
                        help="runs of every cell, interleaved in rounds (default 3)")
    parser.add_argument("--seed", type=int,
                        help="seed of the shuffled cell order within each round (default 0)")
    parser.add_argument("--framings", type=_csv(str),
                        help="sync vs async framings: equal-in-flight (async with fewer users, "
                        "same requests in flight), equal-users (async with the same users, "
                        "max-in-flight times the requests in flight); default both")
    parser.add_argument("--shared-memory", type=_csv(str),
                        help="transfer of the tensors: none (the wire), system (shared "
                        "memory); none,system runs every cell both ways (default none)")
    parser.add_argument("--output-shared-memory-size", type=positive_int, metavar="BYTES",
                        help="the system cells' answers in shared memory too, BYTES per output")
    parser.add_argument("--demo", action="store_true",
                        help="the preset `make demo` runs: " + DEMO_PRESET_TEXT)
    stages = parser.add_argument_group("stages")
    stages.add_argument("--capacity-protocols", type=_csv(str), default=("grpc",),
                        help="protocols of the capacity searches (default grpc)")
    stages.add_argument("--capacity-budget", default="10m",
                        help="time budget of the capacity searches, and again of the "
                        "batching check's searches (default 10m each)")
    stages.add_argument("--no-capacity", action="store_true",
                        help="skip the capacity searches (and so the batching check)")
    stages.add_argument("--no-check", action="store_true",
                        help="skip checking the recommended batching configs")
    stages.add_argument("--no-cells", action="store_true", help="skip the comparison matrix")
    add_search_options(parser)
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --output")
    add_target_options(parser)
    add_process_options(parser)
    parser.set_defaults(func=run)


#: `make demo`'s matrix: the cells its headline needs, with time spent on rounds, not cells.
DEMO_PRESET = {"protocols": ("grpc",), "modes": ("sync", "async"), "batching": ("on",),
               "levels": (4,), "warmup_s": 1.0, "window_s": 1.0, "max_windows": 5,
               "repetitions": 3}
DEMO_PRESET_TEXT = ("gRPC, batching on; sync 4 users × 1 against async 1 user × 4 (equal in "
                    "flight) and 4 users × 8 (equal users); 1 s windows, 3 rounds; capacity "
                    "with batching on and off; flags still override it")


def matrix_from_args(args: argparse.Namespace) -> Matrix:
    """Defaults ← matrix file ← --demo preset ← flags."""
    fields = ("protocols", "modes", "batching", "levels", "rates", "mix", "max_in_flight",
              "warmup_s", "window_s", "max_windows", "repetitions", "seed", "framings",
              "shared_memory", "output_shared_memory_size")
    overrides = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    if args.demo:
        overrides = {**DEMO_PRESET, **overrides}
    return Matrix.from_file(args.matrix, **overrides) if args.matrix else Matrix(**overrides)


def run(args: argparse.Namespace) -> int:
    """Capacity, comparisons, the batching check, then the report."""
    matrix = matrix_from_args(args)
    limits = limits_from_args(args)
    timing = plan_from_args(args)
    budget = parse_duration(args.capacity_budget)
    out = fresh_output(args.output, "bench", args.force)
    capacity_dir = out / "capacity"
    searches = [] if args.no_capacity else searches_for(
        ModelMix.of(matrix.mix).models, args.capacity_protocols, ("on", "off"), limits,
        capacity_dir)
    runs = [] if args.no_cells else matrix.schedule()
    if not searches and not runs:
        raise UsageError("nothing to run: --no-capacity and --no-cells together")
    console.print(f"bench: {len(searches)} capacity searches, {len(runs)} comparison runs"
                  + (f" ({len(matrix.cells())} cells × {matrix.repetitions} interleaved rounds)"
                     if runs and matrix.repetitions > 1 else "") + f" → {out}")
    started = time.monotonic()
    with sigterm_raises_interrupt():
        with target_from_args(args) as target:
            if searches:
                console.print(f"stage 1/3: capacity within P95 ≤ {args.slo_p95_ms:g} ms")
                run_searches(searches, target, timing, budget)
            results = _run_cells(runs, target, out, timing.processes) if runs else []
        if results is None:
            return 2
        if searches and not args.no_check:
            console.print("stage 3/3: batching recommendations, checked")
            recommend_and_check(searches, None if args.url else _restarter(args), limits,
                                timing, capacity_dir, budget)
    if results:
        print_table(results, title=f"runs ({(time.monotonic() - started) / 60:.1f} min)")
    run_dirs = [out / "runs" / r["cell"] for r in results if r["status"] != "failed"]
    with console.status("analysing and writing the report…"):
        _, paths = write_report_for(
            run_dirs, out, slo_p95_ms=args.slo_p95_ms, target_rps=args.target_rps,
            headroom=args.headroom, capacity_dir=capacity_dir if searches else None)
    for table, title in headline_tables(paths["json"]):
        print_table(table, title=title)
    console.print(f"report: {paths['html']}  ({paths['md'].name}, {paths['json'].name})  "
                  f"in {(time.monotonic() - started) / 60:.1f} min")
    return 0


def _restarter(args: argparse.Namespace):
    """``restart(overrides)``: the embedded server of ``args`` with more ``--set`` overrides."""
    def restart(overrides: list[str]):
        again = copy.copy(args)
        again.overrides = [*args.overrides, *overrides]
        return target_from_args(again)
    return restart


def _run_cells(runs: list, target: Target, out: Path,
               processes: Processes) -> list[dict[str, str]] | None:
    """Run the comparison matrix; None when a run refused its input (exit 2)."""
    console.print(f"stage 2/3: {len(runs)} comparison runs")
    started = time.monotonic()
    results = []
    for i, cell in enumerate(runs, 1):
        run_dir = out / "runs" / cell.name
        done = time.monotonic() - started
        left_min = done / (i - 1) * (len(runs) - i + 1) / 60 if i > 1 else None
        eta = f", about {left_min:.1f} min left" if left_min is not None else ""
        job = dataclasses.replace(cell.job(target, run_dir), processes=processes)
        code = job.execute(label=f"[{i}/{len(runs)}] {cell.name}{eta}")
        results.append(_cell_row(cell.name, run_dir, code))
        if code == 2:  # the child said why, in one line
            return None
    return results


def _cell_row(name: str, run_dir: Path, code: int) -> dict[str, str]:
    try:
        meta = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {"cell": name, "status": "failed", "requests": "0", "windows": "-"}
    stability = meta.get("stability") or {}
    status = "stable" if stability.get("stable") else "unstable"
    return {"cell": name, "status": status, "requests": str(meta.get("request_count", 0)),
            "windows": str(len(stability.get("windows", [])))}
