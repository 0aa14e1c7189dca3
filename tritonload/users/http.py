"""HTTP: a transport on geventhttpclient with prebuilt binary-tensor bodies, and TritonHttpUser.

tritonclient.http builds each body once (``generate_request_body``, binary tensors); every
request then is one POST of those bytes over a per-user connection pool. geventhttpclient is
gevent-native, so async mode is simply a pool of greenlets each sending synchronously, with as
many connections as requests in flight (tritonclient's own ``async_infer`` sleeps 10 ms per
call, which caps a user near 80 submissions per second).
"""

from __future__ import annotations

import json

from geventhttpclient import HTTPClient
from tritonclient.http import InferenceServerClient, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from tritonload.clients import build_inputs, client_module
from tritonload.config import Target
from tritonload.payloads import Payload
from tritonload.users.base import Prepared, TritonUser


class HttpTransport:
    """A keep-alive connection pool sized to the user's requests in flight."""

    protocol = "http"

    def __init__(self, target: Target, in_flight: int = 1) -> None:
        host, _, port = target.url("http").rpartition(":")
        self.client = HTTPClient(
            host.strip("[]"), int(port), ssl=target.ssl, concurrency=in_flight,
            connection_timeout=target.timeout_s, network_timeout=target.timeout_s,
        )
        self.headers = dict(target.headers)

    def prepare(self, payload: Payload) -> list[Prepared]:
        """Each payload entry as a ready-to-send body with its headers."""
        module = client_module("http")
        outputs = [InferRequestedOutput(name, binary_data=True) for name in payload.outputs]
        uri = f"/v2/models/{payload.model}/infer"
        prepared = []
        for entry in payload.entries:
            body, json_size = InferenceServerClient.generate_request_body(
                build_inputs(module, entry), outputs=outputs)
            headers = {**self.headers, "Content-Type": "application/octet-stream"}
            if json_size is not None:
                headers["Inference-Header-Content-Length"] = str(json_size)
            prepared.append(Prepared(payload.model, (uri, body, headers), len(body)))
        return prepared

    def send(self, prepared: Prepared) -> int:
        """One inference; returns the response body size. Raises on a non-200 answer."""
        uri, body, headers = prepared.request
        response = self.client.post(uri, body=body, headers=headers)
        data = response.read()
        if response.status_code != 200:
            raise InferenceServerException(msg=_error_message(data),
                                           status=str(response.status_code))
        return len(data)

    def close(self) -> None:
        """Close every pooled connection."""
        self.client.close()


def _error_message(data: bytes) -> str:
    try:
        return str(json.loads(data)["error"])
    except (ValueError, KeyError, TypeError):
        return data[:200].decode(errors="replace") or "empty error response"


class TritonHttpUser(TritonUser):
    """Locust user sending the model mix over HTTP/REST (see `TritonUser` for its settings)."""

    abstract = True
    protocol = "http"

    def make_transport(self, target: Target, settings: object) -> HttpTransport:
        """A connection pool per user."""
        return HttpTransport(target, settings.max_in_flight)
