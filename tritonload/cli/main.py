"""`tritonload` command line: a dispatcher over the sub-commands in `tritonload.cli.commands`."""

from __future__ import annotations

import argparse
import logging
import sys

from tritonload import __version__
from tritonload.core.errors import TritonloadError, print_error


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad flag value said in one line (exit 2) instead of usage + error.

    Sub-command parsers inherit the class, so every command behaves the same; ``--help``
    still shows the full usage.
    """

    def error(self, message: str) -> None:  # noqa: D102 - argparse's hook
        print_error(f"{self.prog}: {message} (see {self.prog} --help)")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, one sub-parser per command."""
    from tritonload.analysis import cli as analysis_cli
    from tritonload.cli.commands import bench, capacity, payload, probe, run, serve, sweep

    parser = OneLineParser(
        prog="tritonload",
        description="Load testing for NVIDIA Triton Inference Server, built on Locust.",
    )
    parser.add_argument("--version", action="version", version=f"tritonload {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parser(sub)
    run.add_parser(sub)
    bench.add_parser(sub)
    capacity.add_parser(sub)
    sweep.add_parser(sub)
    probe.add_parser(sub)
    payload.add_parser(sub)
    analysis_cli.add_report_command(sub)
    analysis_cli.add_compare_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tritonload` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except TritonloadError as exc:
        if str(exc):  # AlreadyReported: the child's own line is on screen
            print_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
