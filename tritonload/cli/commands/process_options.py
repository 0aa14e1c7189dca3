"""`--processes`, and `--master` / `--worker` for a run whose load comes from several hosts."""

from __future__ import annotations

import argparse

from tritonload.cli.headless import MASTER_PORT, Processes
from tritonload.core.errors import UsageError
from tritonload.core.options import positive_number


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def add_process_options(parser: argparse.ArgumentParser, multi_host: bool = False) -> None:
    """``--processes N``; with ``multi_host``, also the master's and the workers' flags."""
    group = parser.add_argument_group(
        "load generator processes",
        "One process sends about 3k req/s per core. More: --processes N forks N Locust "
        "workers here; a run across hosts starts a --master and --worker processes. The master "
        "alone writes the run directory; workers send it their records." if multi_host else
        "One process sends about 3k req/s per core; --processes N forks N Locust workers, and "
        "the master alone writes each run directory.")
    group.add_argument("--processes", type=_count, default=0, metavar="N",
                       help="Locust worker processes on this host (default: one process)")
    if not multi_host:
        return
    group.add_argument("--master", action="store_true",
                       help="be the master of a multi-host run: wait for --expect-workers "
                       "workers, then run, write the run directory and judge the SLOs")
    group.add_argument("--expect-workers", type=_count, default=None, metavar="N",
                       help="with --master: worker processes to wait for (a --worker with "
                       "--processes P counts P)")
    group.add_argument("--worker-wait", type=positive_number, default=60.0, metavar="SECONDS",
                       help="with --master: give up when the workers have not all connected "
                       "by then (default 60)")
    group.add_argument("--worker", action="store_true",
                       help="be a worker: send load for the master at --master-host (no "
                       "--url needed, the master sends the validated settings)")
    group.add_argument("--master-host", default=None, metavar="HOST",
                       help="with --worker: the master's host")
    group.add_argument("--master-port", type=int, default=MASTER_PORT, metavar="PORT",
                       help=f"the master's port (default {MASTER_PORT})")


def check_worker_args(args: argparse.Namespace) -> None:
    """A ``--worker`` takes its target, run directory and SLOs from the master."""
    if args.master or args.expect_workers:
        raise UsageError("--master and --worker do not mix")
    if not args.master_host:
        raise UsageError("--worker needs --master-host HOST")
    given = [flag for flag, value in (("--url", args.url), ("--run-dir", args.run_dir),
                                      ("--report", args.report), ("--slo", args.slo),
                                      ("--min-rps", args.min_rps is not None)) if value]
    if given:
        raise UsageError(f"a --worker takes its target, run directory and SLOs from the "
                         f"master: drop {', '.join(given)}")


def processes_from_args(args: argparse.Namespace) -> Processes:
    """The master's (or the single process's) side; refuses flags that do not go together."""
    master = getattr(args, "master", False)
    expect = getattr(args, "expect_workers", None)
    if master and not expect:
        raise UsageError("--master needs --expect-workers N")
    if expect and not master:
        raise UsageError("--expect-workers is for --master")
    if getattr(args, "worker", False) and master:
        raise UsageError("--master and --worker do not mix")
    if getattr(args, "master_host", None) and not getattr(args, "worker", False):
        raise UsageError("--master-host is for --worker")
    return Processes(local=args.processes, expect_workers=expect or 0,
                     port=getattr(args, "master_port", MASTER_PORT),
                     wait_s=getattr(args, "worker_wait", 60.0))
