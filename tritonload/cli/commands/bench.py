"""`tritonload bench`: run the experiment matrix, then write the report for all of it."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from tritonload.analysis.cli import write_report_for
from tritonload.cli.bench import DEFAULT_MIX, Matrix
from tritonload.cli.commands.target_options import add_target_options, target_from_args
from tritonload.cli.console import console, print_table
from tritonload.cli.headline import headline_rows
from tritonload.cli.signals import sigterm_raises_interrupt
from tritonload.core.errors import UsageError


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
        help="run the protocol × mode × batching × load matrix and write the report",
        description="Run a matrix of headless cells (protocol × mode × batching on/off × load "
        "level), each with a warm-up and perf_analyzer's stability rule, each repeated in "
        "interleaved rounds (every cell once per round, in a seeded shuffled order), one run "
        "directory per repetition under OUT/runs/<cell>-rep<r>/, then write OUT/report.html, "
        "report.md and report.json. Flags override the --matrix file, which overrides the "
        "defaults.",
    )
    parser.add_argument("-o", "--output", default=None,
                        help="output directory (default reports/bench-<time>)")
    parser.add_argument("--matrix", default=None, help="TOML or YAML file with matrix fields")
    parser.add_argument("--protocols", type=_csv(str), help="default grpc,http")
    parser.add_argument("--modes", type=_csv(str), help="default sync,async")
    parser.add_argument("--batching", type=_csv(str), help="on,off (default both)")
    parser.add_argument("--levels", type=_csv(int),
                        help="requests in flight per cell (default 1,4,16)")
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
    parser.add_argument("--slo-p95-ms", type=float, default=50.0,
                        help="P95 objective for the max-throughput table (default 50)")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --output")
    add_target_options(parser)
    parser.set_defaults(func=run)


def matrix_from_args(args: argparse.Namespace) -> Matrix:
    """Defaults ← matrix file ← flags."""
    fields = ("protocols", "modes", "batching", "levels", "rates", "mix", "max_in_flight",
              "warmup_s", "window_s", "max_windows", "repetitions", "seed", "framings")
    overrides = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    return Matrix.from_file(args.matrix, **overrides) if args.matrix else Matrix(**overrides)


def run(args: argparse.Namespace) -> int:
    """Run every cell, then the report."""
    matrix = matrix_from_args(args)
    out = Path(args.output or f"reports/bench-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()):
        if not args.force:
            raise UsageError(f"output {out} is not empty; use --force to replace it")
        shutil.rmtree(out)
    cells = matrix.schedule()
    rounds = f" ({len(matrix.cells())} cells × {matrix.repetitions} interleaved rounds)"
    console.print(f"bench: {len(cells)} runs{rounds if matrix.repetitions > 1 else ''} → {out}")
    started = time.monotonic()
    results = []
    with sigterm_raises_interrupt(), target_from_args(args) as target:
        for i, cell in enumerate(cells, 1):
            run_dir = out / "runs" / cell.name
            done = time.monotonic() - started
            left_min = done / (i - 1) * (len(cells) - i + 1) / 60 if i > 1 else None
            eta = f", about {left_min:.1f} min left" if left_min is not None else ""
            code = cell.job(target, run_dir).execute(
                label=f"[{i}/{len(cells)}] {cell.name}{eta}")
            results.append(_cell_row(cell.name, run_dir, code))
            if code == 2:  # the child said why, in one line
                return 2
    print_table(results, title=f"runs ({(time.monotonic() - started) / 60:.1f} min)")
    run_dirs = [out / "runs" / r["cell"] for r in results if r["status"] != "failed"]
    if not run_dirs:
        raise UsageError("no cell produced a run directory; nothing to report")
    with console.status("analysing and writing the report…"):
        analysis, paths = write_report_for(run_dirs, out, slo_p95_ms=args.slo_p95_ms)
    print_table(headline_rows(analysis, args.slo_p95_ms),
                title="headline (ratios at the highest load level; n.s. = not significant)")
    console.print(f"report: {paths['html']}  ({paths['md'].name}, {paths['json'].name})  "
                  f"in {(time.monotonic() - started) / 60:.1f} min")
    return 0


def _cell_row(name: str, run_dir: Path, code: int) -> dict[str, str]:
    try:
        meta = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {"cell": name, "status": "failed", "requests": "0", "windows": "-"}
    stability = meta.get("stability") or {}
    status = "stable" if stability.get("stable") else "unstable"
    return {"cell": name, "status": status, "requests": str(meta.get("request_count", 0)),
            "windows": str(len(stability.get("windows", [])))}
