"""Control-plane calls to Triton (metadata, config, statistics), the same over either protocol.

The load path never goes through here; this is for validation before a run, config
snapshots in run.json, and the server-stats sampler. HTTP is preferred when the target has it
(geventhttpclient is gevent-native); gRPC answers are normalised to the same dict shapes.

Any KServe v2 server answers the core calls (liveness, metadata, readiness); the others are
Triton's extensions, and a server without one raises `NotServed` (`tritonload.triton.served`
probes them). Seen on kserve 0.21: its HTTP answers such a call 404 with FastAPI's
``{"detail": "Not Found"}``, which tritonclient cannot decode (it looks for Triton's
``"error"`` key); its gRPC answers UNIMPLEMENTED.
"""

from __future__ import annotations

from typing import Any

from tritonload.core.config import Target
from tritonload.core.errors import ServerError, UsageError, classify, first_line, status_of
from tritonload.triton.clients import client_kwargs, tls_failure, tls_refusal


def _ints(values: list[Any]) -> list[int]:
    return [int(v) for v in values]


class NotServed(ServerError):
    """The server does not serve this call: an extension of the protocol it lacks."""


#: tritonclient's message when an HTTP error's body is not a v2 error (``{"error": …}``).
_UNDECODED = "while decoding the response"


def _not_served(exc: BaseException) -> bool:
    """An answer that says the route or the method does not exist, not that the call failed."""
    status = status_of(exc).removeprefix("StatusCode.")
    if status in ("UNIMPLEMENTED", "405", "501"):
        return True
    return status == "404" and _UNDECODED in str(exc)


def _undecoded(exc: BaseException) -> str:
    """What an undecodable HTTP error answer said, on one line."""
    body = str(exc).split("response:", 1)[-1]
    return f"HTTP {status_of(exc)} with a body that is not a v2 error: {' '.join(body.split())}"


class TritonAdmin:
    """Metadata, config, readiness and statistics of a Triton target, as plain dicts."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.protocol = "http" if target.supports("http") else "grpc"
        headers = dict(target.headers)
        if self.protocol == "http":
            import tritonclient.http as client_module

            self._client = client_module.InferenceServerClient(
                target.url("http"), connection_timeout=target.timeout_s,
                network_timeout=target.timeout_s, **client_kwargs(target, "http"),
            )
            self._json: dict[str, Any] = {}
        else:
            import tritonclient.grpc as client_module

            from tritonload.triton.clients import enable_grpc_gevent

            enable_grpc_gevent()
            self._client = client_module.InferenceServerClient(
                target.url("grpc"), **client_kwargs(target, "grpc"))
            self._json = {"as_json": True}  # answers as dicts, like the HTTP client's
        self._headers = headers or None

    def close(self) -> None:
        """Release the connection."""
        self._client.close()

    def __enter__(self) -> TritonAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn: Any, *args: Any, model: str | None = None,
              as_json: bool = True) -> Any:
        try:
            return fn(*args, headers=self._headers, **(self._json if as_json else {}))
        except Exception as exc:  # tritonclient raises several types; classify them all
            if _not_served(exc):
                raise NotServed(f"{what} is not served by {self.target.describe()}") from None
            if _UNDECODED in str(exc):  # reported as what it is, whatever its status says
                raise ServerError(f"{what} failed on {self.target.describe()}: "
                                  f"{_undecoded(exc)}") from None
            kind = classify(exc)
            detail = first_line(exc)
            if kind == "auth":
                raise UsageError(f"authentication failed on {self.target.describe()} for "
                                 f"{what}: {detail} (give the header with --header "
                                 "NAME=VALUE)") from None
            if kind == "tls":
                raise ServerError(tls_failure(self.target, self.target.describe(), detail)) \
                    from None
            if kind == "unavailable":
                why = tls_refusal(self.target, self.protocol) if self.target.ssl else None
                if why:
                    raise ServerError(tls_failure(self.target, self.target.describe(), why)) \
                        from None
                raise ServerError(
                    f"cannot reach Triton at {self.target.describe()}: {detail}"
                ) from None
            if kind in ("model_not_found", "model_not_ready") and model:
                raise UsageError(
                    f"model {model!r} is not available on {self.target.describe()} "
                    f"({detail}); {self._served_models()}"
                ) from None
            raise ServerError(f"{what} failed on {self.target.describe()}: {detail}") from None

    def server_live(self) -> None:
        """Raise `ServerError` unless the target answers as a live KServe v2 server."""
        try:
            live = self._call("liveness check", self._client.is_server_live, as_json=False)
        except NotServed:
            live = False
        if not live:
            raise ServerError(f"{self.target.describe()} answers, but not as a live KServe v2 "
                              "server (GET /v2/health/live, gRPC ServerLive): is it one?")

    def repository_index(self) -> list[str]:
        """Names of the models the server's repository index lists as ready (an extension)."""
        index = self._call("the repository index", self._client.get_model_repository_index)
        entries = index.get("models", []) if isinstance(index, dict) else index
        return sorted(e["name"] for e in entries if e.get("state", "READY") == "READY")

    def model_names(self) -> list[str]:
        """`repository_index`, or ``[]`` when the server does not list its models."""
        try:
            return self.repository_index()
        except ServerError:
            return []

    def _served_models(self) -> str:
        try:
            return f"served models: {', '.join(self.repository_index()) or 'none'}"
        except NotServed:
            return "the server does not list its models (no repository index)"
        except ServerError:
            return "the served models could not be listed"

    def metadata(self, model: str) -> dict[str, Any]:
        """Model metadata with integer shapes: ``{"name", "inputs": [{name, datatype, shape}]}``."""
        try:
            meta = self._call("model metadata", self._client.get_model_metadata, model,
                              model=model)
        except NotServed:  # the core protocol's: not a v2 server, whatever it is
            raise ServerError(f"{self.target.describe()} does not serve KServe v2 model "
                              f"metadata (for {model!r}): is it a KServe v2 server?") from None
        for tensor in meta.get("inputs", []) + meta.get("outputs", []):
            tensor["shape"] = _ints(tensor.get("shape", []))
        return meta

    def model_ready(self, model: str) -> None:
        """Raise a one-line `UsageError` unless the server says ``model`` is ready."""
        if not self._call("model readiness", self._client.is_model_ready, model, model=model,
                          as_json=False):
            raise UsageError(f"model {model!r} is not ready on {self.target.describe()}; "
                             f"{self._served_models()}")

    def config(self, model: str) -> dict[str, Any]:
        """The model configuration as served (an extension: `NotServed` without it)."""
        config = self._call("model config", self._client.get_model_config, model)
        config = config.get("config", config)
        config["max_batch_size"] = int(config.get("max_batch_size", 0))
        return config

    def statistics(self, model: str = "") -> list[dict[str, Any]]:
        """Raw ``model_stats`` entries (cumulative counters; may be strings over gRPC)."""
        stats = self._call("statistics", self._client.get_inference_statistics, model)
        return stats.get("model_stats", [])

    def register_system_shared_memory(self, name: str, key: str, byte_size: int) -> None:
        """Register a POSIX shared-memory region (``key`` is its /dev/shm name) as ``name``."""
        self._call("shared-memory registration", self._client.register_system_shared_memory,
                   name, key, byte_size, as_json=False)

    def unregister_system_shared_memory(self, name: str) -> None:
        """Unregister one system shared-memory region."""
        self._call("shared-memory unregistration",
                   self._client.unregister_system_shared_memory, name, as_json=False)

    def system_shared_memory(self) -> list[str]:
        """Names of the system shared-memory regions registered on the server."""
        status = self._call("shared-memory status",
                            self._client.get_system_shared_memory_status)
        if isinstance(status, dict):  # gRPC: {"regions": {name: {...}}}
            return sorted(status.get("regions", {}))
        return sorted(region["name"] for region in status)

    def register_cuda_shared_memory(self, name: str, raw_handle: bytes, device: int,
                                    byte_size: int) -> None:  # pragma: no cover (needs a GPU)
        """Register a CUDA shared-memory region by its IPC handle."""
        self._call("CUDA shared-memory registration", self._client.register_cuda_shared_memory,
                   name, raw_handle, device, byte_size, as_json=False)

    def unregister_cuda_shared_memory(self, name: str) -> None:  # pragma: no cover
        """Unregister one CUDA shared-memory region."""
        self._call("CUDA shared-memory unregistration",
                   self._client.unregister_cuda_shared_memory, name, as_json=False)


def config_snapshot(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a model config that explain its performance, for run.json."""
    snapshot = {
        "max_batch_size": int(config.get("max_batch_size", 0)),
        "dynamic_batching": config.get("dynamic_batching") or None,
        "instance_group": [
            {"count": int(g.get("count", 1)), "kind": g.get("kind", "")}
            for g in config.get("instance_group", [])
        ],
    }
    steps = ensemble_steps(config)
    if steps:
        snapshot["ensemble_steps"] = steps
    if config.get("source") == "metadata":  # `tritonload.triton.served.inferred_config`
        snapshot["source"] = "metadata"
    return snapshot


def ensemble_steps(config: dict[str, Any]) -> list[str]:
    """An ensemble's step models, in order (``[]`` for a model that is not an ensemble)."""
    scheduling = config.get("ensemble_scheduling") or {}
    return [str(step["model_name"]) for step in scheduling.get("step", [])]
