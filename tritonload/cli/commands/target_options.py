"""`--url` and friends, and the embedded server that stands in when no URL is given."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from tritonload.cli.commands.serve import add_server_options, server_from_args
from tritonload.cli.console import console
from tritonload.core.config import Target, TlsFiles, parse_pairs
from tritonload.core.errors import UsageError
from tritonload.core.options import add_tls_options


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """Options naming the Triton server to load; without --url, an embedded one is started."""
    group = parser.add_argument_group("target")
    group.add_argument(
        "--url", default=None,
        help="Triton to load: host (HTTP 8000 + gRPC 8001), host:port, or "
        "http(s)://host:port / grpc(s)://host:port to pin a protocol. "
        "Default: start the embedded server.",
    )
    group.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                       help="extra request header, e.g. an auth token; repeatable")
    group.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                       help="per-request timeout (default 30)")
    add_tls_options(group)
    add_server_options(parser)


@contextlib.contextmanager
def target_from_args(args: argparse.Namespace) -> Iterator[Target]:
    """Yield the target; start (and finally stop) the embedded server when there is no --url."""
    headers = parse_pairs(args.header, "--header")
    tls = TlsFiles.of(args.tls_ca, args.tls_client_cert, args.tls_client_key)
    if args.url:
        yield Target.parse(args.url, headers=headers, timeout_s=args.timeout, tls=tls)
        return
    if tls is not None:
        raise UsageError("--tls-ca, --tls-client-cert and --tls-client-key need --url grpcs://… or "
                         "https://… (the embedded server started without --url is plain)")
    server = server_from_args(args)
    with console.status("starting the embedded Triton server…"):
        server.start()
    try:
        yield Target(host=server.host, http_port=server.ports.http, grpc_port=server.ports.grpc,
                     embedded=True, headers=headers, timeout_s=args.timeout,
                     metrics_port=server.ports.metrics)
    finally:
        server.stop()
