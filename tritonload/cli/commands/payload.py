"""`tritonload payload`: write a perf_analyzer-format payload file from a model's metadata."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tritonload.cli.commands.target_options import add_target_options, target_from_args
from tritonload.cli.console import console
from tritonload.core.errors import UsageError
from tritonload.server.fleet import DEMO_SHAPES
from tritonload.triton.admin import TritonAdmin
from tritonload.triton.payloads import (
    generate_payload,
    parse_shape_override,
    payload_document,
)
from tritonload.triton.served import BATCH_DIM_CHOICES, served_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `payload`."""
    parser = sub.add_parser(
        "payload",
        help="write a perf_analyzer --input-data JSON file for a model",
        description="Generate request data from a served model's metadata and write it in "
        "perf_analyzer's --input-data format, usable by tritonload (--payload MODEL=FILE) and "
        "perf_analyzer alike.",
    )
    parser.add_argument("model", help="model name")
    parser.add_argument("-o", "--output", required=True, help="JSON file to write")
    parser.add_argument("--entries", type=int, default=4, help="entries (default 4)")
    parser.add_argument("--shape", action="append", default=[], metavar="INPUT=DIMS",
                        help="dims of a variable-shape input, without the batch dim")
    parser.add_argument("--fill", choices=("random", "zeros"), default="random")
    parser.add_argument("--b64", action="store_true", help="store tensors as base64 raw bytes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-dim", choices=BATCH_DIM_CHOICES, default="auto",
                        help="for a server without the model configuration extension: whether "
                        "the inputs carry a batch dimension (default auto: from the metadata)")
    add_target_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the file."""
    shapes = dict(DEMO_SHAPES.get(args.model, {}))
    for item in args.shape:
        _, name, dims = parse_shape_override(f"{args.model}.{item}")
        shapes[name] = dims
    if args.entries < 1:
        raise UsageError("--entries must be >= 1")
    with target_from_args(args) as target, TritonAdmin(target) as admin:
        info, _ = served_model(admin, args.model, batch_dim=args.batch_dim)
    payload = generate_payload(info, shapes, fill=args.fill, count=args.entries, seed=args.seed)
    Path(args.output).write_text(json.dumps(payload_document(payload, info, b64=args.b64)))
    console.print(f"wrote {args.entries} entries for {args.model} to {args.output}")
    return 0
