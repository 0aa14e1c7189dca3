"""Does the target let these requests in? Asked once per protocol, before any load.

Triton checks a restricted API's header (``--http-restricted-api``,
``--grpc-restricted-protocol``) before it parses the request. So an inference call with no
inputs is answered 403 over HTTP, or UNAVAILABLE "This protocol is restricted, expecting
header …" over gRPC, when the header is missing or wrong, and 400 "expected N inputs" when it
is right. The model never runs and its statistics do not move (checked on this build: success
and fail counts stayed 0), so the check leaves no trace in a run's server-side numbers.
Without it, a wrong token would only show as a run of failed requests.
"""

from __future__ import annotations

from tritonload.core.config import Target
from tritonload.core.errors import ServerError, UsageError, classify, message_of
from tritonload.triton.clients import (
    client_kwargs,
    client_module,
    enable_grpc_gevent,
    tls_failure,
    tls_refusal,
)


def check_access(target: Target, protocol: str, model: str) -> None:
    """Raise a one-line error when ``protocol`` requests to ``model`` are refused or unsent."""
    if protocol == "grpc":
        enable_grpc_gevent()
    module = client_module(protocol)
    where = f"{protocol}{'s' if target.ssl else ''}://{target.url(protocol)}"
    client = module.InferenceServerClient(target.url(protocol),
                                           **client_kwargs(target, protocol))
    try:
        client.infer(model, [], headers=dict(target.headers) or None)
    except Exception as exc:  # tritonclient raises several types; the kind decides
        kind = classify(exc)
        if kind == "auth":
            raise UsageError(f"authentication failed on {where}: {message_of(exc)} "
                             "(give the header with --header NAME=VALUE)") from None
        if kind == "tls":
            raise ServerError(tls_failure(target, where, message_of(exc))) from None
        if kind == "unavailable":
            why = tls_refusal(target, protocol) if target.ssl else None
            if why:
                raise ServerError(tls_failure(target, where, why)) from None
            raise ServerError(f"cannot reach Triton at {where}: {message_of(exc)}") from None
        # Anything else (the expected 400) is for the payload checks and the run to judge.
    finally:
        client.close()
