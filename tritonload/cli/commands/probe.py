"""`tritonload probe`: one timed request per model and protocol, a smoke test of a target."""

from __future__ import annotations

import argparse

from tritonload.cli.commands.target_options import add_target_options, target_from_args
from tritonload.cli.console import print_table
from tritonload.cli.signals import sigterm_raises_interrupt
from tritonload.core.errors import UsageError
from tritonload.server.fleet import DEMO_SHAPES
from tritonload.triton.admin import NotServed, TritonAdmin
from tritonload.triton.payloads import parse_shape_override
from tritonload.triton.probe import fetch_payloads, probe


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `probe`."""
    parser = sub.add_parser(
        "probe",
        help="time one request per model over gRPC and HTTP",
        description="Send a few requests to every model (or --model ones) over each protocol "
        "the target offers and print the median latency. Without --url the embedded server "
        "is started first and stopped afterwards.",
    )
    add_target_options(parser)
    parser.add_argument("--model", action="append", default=[], metavar="NAME",
                        help="model to probe; repeatable (default: every ready model)")
    parser.add_argument("--shape", action="append", default=[], metavar="MODEL.INPUT=DIMS",
                        help="dims of a variable-shape input, without the batch dim; repeatable "
                        "(default for the demo fleet: text_classifier.input_ids=128)")
    parser.add_argument("--repeats", type=int, default=5, help="timed requests each (default 5)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Probe and print the table."""
    shapes = {m: dict(s) for m, s in DEMO_SHAPES.items()}
    for item in args.shape:
        model, name, dims = parse_shape_override(item)
        shapes.setdefault(model, {})[name] = dims
    with sigterm_raises_interrupt(), target_from_args(args) as target:
        models = args.model
        if not models:
            with TritonAdmin(target) as admin:
                admin.server_live()
                try:
                    models = admin.repository_index()
                except NotServed:
                    raise UsageError(f"{target.describe()} does not list its models (no "
                                     "repository index): name them with --model") from None
        rows = probe(target, fetch_payloads(target, models, shapes), repeats=max(1, args.repeats))
    print_table(rows, title=f"one request per model ({target.describe()})")
    return 0 if all(r["status"] == "ok" for r in rows) else 1
