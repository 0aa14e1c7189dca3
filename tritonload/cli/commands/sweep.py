"""`tritonload sweep`: restart the embedded server across batching configs and rank them."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pandas as pd

from tritonload.cli.bench import Matrix
from tritonload.cli.commands.serve import add_server_options, server_from_args
from tritonload.cli.console import console, print_table
from tritonload.cli.signals import sigterm_raises_interrupt
from tritonload.cli.sweep import grid, rank, steady_summary
from tritonload.core.config import Target
from tritonload.core.errors import UsageError
from tritonload.server.fleet import BASE_FLEET


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from None


def _preferred(text: str) -> tuple[int, ...]:
    return () if text.strip() in ("", "none") else tuple(_ints(text))


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `sweep`."""
    parser = sub.add_parser(
        "sweep",
        help="rank dynamic-batching configs of one model (embedded server)",
        description="For each max_queue_delay × preferred batch sizes × instance count, restart "
        "the embedded server with that config for one model, measure it at each load level, "
        "then rank the configs by the highest throughput whose P95 meets the SLO and print the "
        "best as a config.pbtxt snippet. Writes OUT/sweep.json, OUT/sweep.md and the run dirs.",
    )
    parser.add_argument("--model", default="text_classifier",
                        choices=[m.name for m in BASE_FLEET], help="default text_classifier")
    parser.add_argument("--delays", type=_ints, default=[0, 100, 1000, 5000, 100000],
                        help="max_queue_delay_microseconds values (default 0,100,1000,5000,100000)")
    parser.add_argument("--preferred", type=_preferred, action="append", default=None,
                        metavar="SIZES", help="preferred batch sizes, e.g. 4,8,16 or none; "
                        "repeatable (default: the model's own)")
    parser.add_argument("--instances", type=_ints, default=None,
                        help="instance counts (default: the model's own)")
    parser.add_argument("--levels", type=_ints, default=[1, 16],
                        help="requests in flight to measure at (default 1,16)")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--slo-p95-ms", type=float, default=50.0, help="default 50")
    parser.add_argument("--window", type=float, default=2.0, help="stability window s")
    parser.add_argument("--max-windows", type=int, default=5)
    parser.add_argument("-o", "--output", default=None, help="default reports/sweep-<time>")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --output")
    add_server_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Sweep, rank, recommend."""
    spec = next(m for m in BASE_FLEET if m.name == args.model)
    configs = grid(args.delays, args.preferred or [spec.preferred_batch_sizes],
                   args.instances or [spec.instances])
    out = Path(args.output or f"reports/sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()):
        if not args.force:
            raise UsageError(f"output {out} is not empty; use --force to replace it")
        shutil.rmtree(out)
    matrix = Matrix(protocols=(args.protocol,), modes=("async",), batching=("on",),
                    levels=tuple(args.levels), mix=f"{args.model}:1", window_s=args.window,
                    max_windows=args.max_windows)
    rows = []
    with sigterm_raises_interrupt():
        for i, config in enumerate(configs, 1):
            server = server_from_args(args)
            server.models = [config.apply(spec)]
            with console.status(f"[{i}/{len(configs)}] starting the server with {config.name}"):
                server.start()
            try:
                target = Target(host=server.host, http_port=server.ports.http,
                                grpc_port=server.ports.grpc, embedded=True)
                for cell in matrix.cells():
                    run_dir = out / config.name / cell.name
                    cell.job(target, run_dir).execute(
                        label=f"[{i}/{len(configs)}] {config.name} {cell.name}")
                    rows.append({"config": config.name, **steady_summary(run_dir)})
            finally:
                server.stop()
    table = rank(pd.DataFrame(rows), args.slo_p95_ms)
    best = next((c for c in configs if c.name == table.config.iloc[0]), None)
    _write(out, rows, table, best, args)
    print_table(_display(table), title=f"{args.model}: configs ranked by max req/s with "
                                       f"P95 ≤ {args.slo_p95_ms:g} ms")
    if best is not None and table.meets_slo.iloc[0]:
        console.print(f"Best: {best.name}\n{best.pbtxt()}")
    else:
        console.print(f"No configuration kept P95 within {args.slo_p95_ms:g} ms.")
    return 0


def _display(table: pd.DataFrame) -> list[dict[str, str]]:
    return [{"rank": str(i + 1), "config": r.config,
             "max req/s in SLO": f"{r.max_rps_within_slo:.1f}" if r.meets_slo else "none",
             "P95 ms there": f"{r.p95_ms_at_that_load:.2f}",
             "P95 ms at lowest load": f"{r.p95_ms_at_lowest_load:.2f}"}
            for i, r in table.iterrows()]


def _write(out: Path, rows: list[dict], table: pd.DataFrame, best: object,
           args: argparse.Namespace) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps({
        "model": args.model, "slo_p95_ms": args.slo_p95_ms, "measurements": rows,
        "ranking": table.to_dict(orient="records"),
        "best_config_pbtxt": best.pbtxt() if best is not None else None}, indent=2))
    lines = [f"# Sweep: {args.model}", "", f"Ranked by max throughput with P95 ≤ "
             f"{args.slo_p95_ms:g} ms.", "", "| rank | config | max req/s in SLO | P95 ms there | "
             "P95 ms at lowest load |", "|---|---|---|---|---|"]
    lines += [f"| {d['rank']} | {d['config']} | {d['max req/s in SLO']} | {d['P95 ms there']} | "
              f"{d['P95 ms at lowest load']} |" for d in _display(table)]
    if best is not None:
        lines += ["", "Best configuration:", "", "```", best.pbtxt().rstrip(), "```"]
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
