"""``tritonload report`` and ``tritonload compare``, as argparse sub-commands.

Wire them into the main CLI with :func:`add_report_command` and :func:`add_compare_command`;
each sets ``func(args) -> int``. Errors are raised as
:class:`tritonload.core.errors.TritonloadError`. :func:`main` runs them stand-alone
(``python -m analysis.cli report RUN_DIR -o OUT``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tritonload.core.errors import TritonloadError, UsageError, print_error
from tritonload.core.options import positive_number

from . import capacity

if TYPE_CHECKING:
    from .pipeline import Analysis


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def add_report_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``report RUN_DIR... -o OUT`` to an argparse sub-parsers object.

    Returns:
        The new sub-parser.

    """
    p = subparsers.add_parser(
        "report",
        help="capacity-planning report (HTML, Markdown, JSON) from run directories",
        description="Analyse run directories (and capacity searches, --capacity) and write "
        "report.html, report.md and report.json. A bench's output re-renders with "
        "`report OUT/runs/* --capacity OUT/capacity -o OUT --slo-p95-ms 50`.",
    )
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run directories")
    p.add_argument("--capacity", default=None, metavar="DIR",
                   help="a directory of capacity searches (*/search.json, "
                   "recommendations.json), e.g. a bench's OUT/capacity")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="output directory")
    p.add_argument("--slo-p95-ms", type=positive_number, metavar="X",
                   help="P95 objective in ms (enables the max-load and replica plan)")
    p.add_argument("--max-error-rate", type=_fraction,
                   default=capacity.DEFAULT_MAX_ERROR_RATE, metavar="E",
                   help="highest acceptable error rate of a load level (default %(default)s)")
    p.add_argument("--target-rps", type=positive_number, metavar="R",
                   help="rate to plan replicas for (needs --slo-p95-ms)")
    p.add_argument("--headroom", type=_fraction, default=capacity.DEFAULT_HEADROOM,
                   metavar="H", help="share of capacity kept free (default %(default)s)")
    p.add_argument("--slo-ttft-ms", type=positive_number, metavar="X",
                   help="generations: goodput counts those whose TTFT ≤ X ms")
    p.add_argument("--slo-itl-ms", type=positive_number, metavar="X",
                   help="generations: goodput counts those whose mean inter-token gap ≤ X ms")
    p.add_argument("--force", action="store_true",
                   help="analyse runs together even when their targets or configs differ")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap replicates (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=run_report)
    return p


def add_compare_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``compare A B`` to an argparse sub-parsers object.

    Returns:
        The new sub-parser.

    """
    p = subparsers.add_parser(
        "compare",
        help="compare two runs (A = baseline, B = candidate) as a Markdown table",
        description="Set two run directories side by side and flag every significant "
        "regression or improvement (95% bootstrap intervals).",
    )
    p.add_argument("a", metavar="A", help="baseline run directory")
    p.add_argument("b", metavar="B", help="candidate run directory")
    p.add_argument("--force", action="store_true",
                   help="compare even when targets or model configs differ")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 when any significant regression is found")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap replicates (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=run_compare)
    return p


def _check_bootstrap(n: int) -> None:
    if n < 100:
        raise UsageError(f"--bootstrap must be at least 100, got {n}")


def write_report_for(run_dirs: Sequence[str | Path], out_dir: str | Path, *,
                     force: bool = False, n_boot: int = 1000, seed: int = 0,
                     capacity_dir: str | Path | None = None,
                     **params: float | None) -> tuple[Analysis, dict[str, Path]]:
    """Load run directories (and capacity searches), analyse them, write the three reports.

    ``params`` go to :func:`analysis.pipeline.analyze` (``slo_p95_ms``, ``target_rps``,
    ``headroom``, ``max_error_rate``). ``capacity_dir`` holds ``*/search.json`` and
    ``recommendations.json`` (`tritonload capacity` / `bench`).
    """
    from .load import empty_runset, load_capacity, load_probe_metrics, load_runs
    from .pipeline import analyze
    from .report import write_report

    searches, recommendations = load_capacity(capacity_dir) if capacity_dir else ([], [])
    runset = load_runs(run_dirs, force=force) if run_dirs else empty_runset()
    probe_dirs = [p["run_dir"] for doc in searches for p in doc["knee"]["probes"]]
    analysis = analyze(runset, n_boot=n_boot, seed=seed, searches=searches,
                       recommendations=recommendations,
                       probe_metrics=(load_probe_metrics(probe_dirs, capacity_dir)
                                      if probe_dirs else None),
                       **params)
    return analysis, write_report(analysis, out_dir)


def run_report(args: argparse.Namespace) -> int:
    """Execute ``report``: load, analyse, write the three files, print where they are."""
    _check_bootstrap(args.bootstrap)
    if not args.run_dirs and not args.capacity:
        raise UsageError("report: give run directories, --capacity DIR, or both")
    if args.capacity and not Path(args.capacity).is_dir():
        raise UsageError(f"--capacity {args.capacity}: no such directory")
    _, paths = write_report_for(
        args.run_dirs, args.out, force=args.force, n_boot=args.bootstrap, seed=args.seed,
        capacity_dir=args.capacity, slo_p95_ms=args.slo_p95_ms, target_rps=args.target_rps,
        headroom=args.headroom, max_error_rate=args.max_error_rate,
        slo_ttft_ms=args.slo_ttft_ms, slo_itl_ms=args.slo_itl_ms,
    )
    for kind in ("html", "md", "json"):
        sys.stdout.write(f"{kind:>4}: {paths[kind]}\n")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Execute ``compare``: print the Markdown comparison of run B against run A."""
    from . import compare, metrics
    from .load import ensure_compatible, load_run, read_run_json
    from .report import compare_markdown

    _check_bootstrap(args.bootstrap)
    metas = [read_run_json(args.a), read_run_json(args.b)]
    for w in ensure_compatible(metas, [args.a, args.b], force=args.force):
        sys.stderr.write(f"warning: {w}\n")
    sides = []
    for i, path in enumerate((args.a, args.b)):
        run = load_run(path)
        windows = metrics.steady_windows(run.runs)
        sides.append(metrics.request_metrics(run.records, windows, run.runs,
                                             n_boot=args.bootstrap, seed=args.seed + i,
                                             cdf_points=0))
    run_a, run_b = (str(m["run_id"]) for m in metas)
    if run_a == run_b:
        run_a, run_b = f"A {run_a}", f"B {run_b}"
    table = compare.compare_runs(sides[0], sides[1])
    sys.stdout.write(compare_markdown(table, run_a, run_b))
    if args.fail_on_regression and (table["verdict"] == compare.REGRESSION).any():
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``report`` or ``compare`` stand-alone; returns the exit code.

    A :class:`~tritonload.core.errors.TritonloadError` is printed as one line on stderr.
    """
    parser = argparse.ArgumentParser(prog="tritonload")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    add_report_command(sub)
    add_compare_command(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except TritonloadError as exc:
        print_error(str(exc))
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
