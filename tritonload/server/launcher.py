"""Start and stop an embedded, real Triton Inference Server.

nvidia-pytriton ships the ``tritonserver`` binary and its Python backend. We use them directly:
each start lays out a fresh workspace (a backend directory holding the stub for this Python,
and a model repository rendered from the fleet specs), launches ``tritonserver`` bound to
loopback, waits until every model is ready, and on stop leaves no process behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tritonload.core.errors import ServerError, UsageError
from tritonload.server.fleet import ModelSpec, demo_fleet, render_config

log = logging.getLogger(__name__)

MODEL_CODE = Path(__file__).with_name("model_code")
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class AuthRestriction:
    """Triton's own header check: these APIs answer only requests that carry NAME: VALUE.

    Triton takes it as ``--http-restricted-api`` and ``--grpc-restricted-protocol``. Over gRPC
    it expects the header as ``triton-grpc-protocol-NAME`` (checked on this build: a plain
    ``NAME`` is refused with UNAVAILABLE "This protocol is restricted, expecting header
    'triton-grpc-protocol-NAME'"); over HTTP a missing or wrong value is a 403.
    """

    name: str
    value: str
    apis: tuple[str, ...] = ("inference",)

    def flags(self) -> list[str]:
        """Tritonserver's command-line flags for this restriction."""
        rule = f"{','.join(self.apis)}:{self.name}={self.value}"
        return [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]

    @property
    def grpc_name(self) -> str:
        """The header name a gRPC client must send."""
        return f"triton-grpc-protocol-{self.name}"


@dataclass(frozen=True)
class GrpcTls:
    """TLS on Triton's gRPC endpoint: ``--grpc-use-ssl`` and its certificate flags.

    Triton's HTTP endpoint has no TLS option, so the readiness check stays plain HTTP.
    ``cert`` and ``key`` are the server's PEM files. With ``mutual``, Triton asks every client
    for a certificate signed by ``ca`` (``--grpc-use-ssl-mutual``, which takes precedence over
    ``--grpc-use-ssl``) and refuses the handshake without one.
    """

    cert: str
    key: str
    ca: str | None = None
    mutual: bool = False

    def __post_init__(self) -> None:
        if self.mutual and self.ca is None:
            raise UsageError("mutual TLS needs the CA that signs the client certificates")
        for path in (self.cert, self.key, self.ca):
            if path is not None and not Path(path).is_file():
                raise UsageError(f"TLS file {path}: no such file")

    def flags(self) -> list[str]:
        """Tritonserver's command-line flags for this TLS setup."""
        flags = ["--grpc-use-ssl=true", f"--grpc-server-cert={self.cert}",
                 f"--grpc-server-key={self.key}"]
        if self.ca is not None:
            flags.append(f"--grpc-root-cert={self.ca}")
        if self.mutual:
            flags.append("--grpc-use-ssl-mutual=true")
        return flags


#: How often the embedded server refreshes its CPU/GPU gauges (see `EmbeddedTriton.start`).
METRICS_INTERVAL_MS = 1000


@dataclass(frozen=True)
class Ports:
    """The three ports Triton listens on."""

    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def _pytriton_dist() -> Path:
    try:
        import pytriton
    except ImportError:
        raise ServerError("nvidia-pytriton is not installed: pip install nvidia-pytriton") from None
    return Path(pytriton.__file__).parent / "tritonserver"


def _kill_with_parent() -> None:
    """Runs in the child before exec: die with the parent, so no server outlives us."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _port_busy(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class EmbeddedTriton:
    """A real tritonserver serving the demo fleet on loopback.

    Use it as a context manager::

        with EmbeddedTriton(ports=Ports(18000, 18001, 18002)) as server:
            client = tritonclient.http.InferenceServerClient(server.http_url)
    """

    def __init__(
        self,
        models: list[ModelSpec] | None = None,
        ports: Ports = Ports(),
        host: str = "127.0.0.1",
        ready_timeout_s: float = 120.0,
        log_file: str | os.PathLike | None = None,
        auth: AuthRestriction | None = None,
        grpc_tls: GrpcTls | None = None,
        metrics_config: tuple[str, ...] = (),
    ) -> None:
        self.models = list(models) if models is not None else demo_fleet()
        self.ports = ports
        self.host = host
        self.ready_timeout_s = ready_timeout_s
        self.auth = auth
        self.grpc_tls = grpc_tls
        self.metrics_config = tuple(metrics_config)  # --metrics-config SETTING=VALUE items
        self._user_log = Path(log_file) if log_file else None
        self._log_file: Path | None = None
        self._workdir: Path | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP/REST endpoint (tritonclient's url form)."""
        return f"{self.host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        return f"{self.host}:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        """URL of the Prometheus metrics endpoint."""
        return f"http://{self.host}:{self.ports.metrics}/metrics"

    @property
    def pid(self) -> int | None:
        """Process id of tritonserver while it runs."""
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        """Whether tritonserver is still alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """Where the server's own log goes."""
        return self._log_file

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> EmbeddedTriton:
        """Launch tritonserver and block until every model is ready."""
        for name, port in (("http", self.ports.http), ("grpc", self.ports.grpc),
                           ("metrics", self.ports.metrics)):
            if _port_busy(self.host, port):
                raise ServerError(f"port {port} ({name}) on {self.host} is busy; choose another "
                                  f"with --{name}-port")
        dist = _pytriton_dist()
        self._workdir = Path(tempfile.mkdtemp(prefix="tritonload-server-"))
        backends = self._prepare_backends(dist)
        repo = self._write_repository()
        self._log_file = self._user_log or self._workdir / "tritonserver.log"
        cmd = [
            str(dist / "bin" / "tritonserver"),
            f"--model-repository={repo}",
            f"--backend-directory={backends}",
            f"--cache-directory={dist / 'caches'}",
            f"--http-address={self.host}", f"--http-port={self.ports.http}",
            f"--grpc-address={self.host}", f"--grpc-port={self.ports.grpc}",
            f"--metrics-address={self.host}", f"--metrics-port={self.ports.metrics}",
            "--allow-metrics=true", "--allow-gpu-metrics=false",
            # The CPU and GPU gauges refresh at this period (Triton's default is 2 s); one
            # second matches tritonload's statistics sampling, so every sample is fresh.
            f"--metrics-interval-ms={METRICS_INTERVAL_MS}",
            *(f"--metrics-config={item}" for item in self.metrics_config),
            "--strict-readiness=true", "--exit-on-error=true", "--exit-timeout-secs=5",
            "--log-verbose=0",
            *(self.auth.flags() if self.auth else []),
            *(self.grpc_tls.flags() if self.grpc_tls else []),
        ]
        log.info("starting tritonserver: %s", " ".join(cmd))
        with open(self._log_file, "wb") as out:
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self._server_env(dist), start_new_session=True, preexec_fn=_kill_with_parent,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and every stub process it started. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    log.warning("tritonserver did not stop in 15 s; killing it")
            # The stubs share the server's process group; make sure none outlives it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> EmbeddedTriton:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- workspace -------------------------------------------------------------------------

    def _prepare_backends(self, dist: Path) -> Path:
        """A backend dir whose Python backend holds the stub built for this interpreter."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise ServerError(f"nvidia-pytriton has no Python-backend stub for Python {version}")
        target = self._workdir / "backends" / "python"
        shutil.copytree(dist / "backends" / "python", target,
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, target / "triton_python_backend_stub")
        return target.parent

    def _write_repository(self) -> Path:
        repo = self._workdir / "models"
        for spec in self.models:
            version_dir = repo / spec.name / "1"
            version_dir.mkdir(parents=True)
            (repo / spec.name / "config.pbtxt").write_text(render_config(spec))
            if spec.is_ensemble:  # Triton runs it from the config alone
                continue
            code = "generator.py" if spec.decoupled else "model.py"  # Triton runs model.py
            shutil.copy2(MODEL_CODE / code, version_dir / "model.py")
            shutil.copy2(MODEL_CODE / "demo_functions.py", version_dir / "demo_functions.py")
        return repo

    def _server_env(self, dist: Path) -> dict[str, str]:
        env = dict(os.environ)
        # The stub links libpython by name: put this interpreter's LIBDIR first, or the system
        # libpython of another patch release gets loaded and model loading fails.
        libdirs = [sysconfig.get_config_var("LIBDIR") or "",
                   str(dist.parent.parent / "nvidia_pytriton.libs"),
                   env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = ":".join(d for d in libdirs if d)
        # The embedded interpreter finds its prefix (and numpy) from `python3` on PATH.
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        return env

    # -- readiness -------------------------------------------------------------------------

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        pending = [m.name for m in self.models]
        while pending:
            if self._proc.poll() is not None:
                raise ServerError(f"tritonserver exited during start-up: {self._first_error()}")
            if time.monotonic() > deadline:
                raise ServerError(
                    f"models not ready after {self.ready_timeout_s:g} s: {', '.join(pending)}"
                )
            pending = [m for m in pending if not self._http_ok(f"/v2/models/{m}/ready")]
            if pending:
                time.sleep(0.2)
        log.info("tritonserver ready with %d models", len(self.models))

    def _http_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _first_error(self) -> str:
        """The most telling line of the server log: a failed model load, else the last error."""
        try:
            lines = self._log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        for line in lines:
            match = _FAILED_LOAD.search(line)
            if match:
                return f"model {match['model']!r} failed to load: {match['why']}"
        errors = [ln for ln in lines if ln.startswith("error:") or "] \"" in ln and ln[:1] == "E"]
        errors = [ln for ln in errors if "CudaDriverHelper" not in ln]  # harmless without a GPU
        pick = errors[-1] if errors else (lines[-1] if lines else "(empty server log)")
        where = f" (server log: {self._user_log})" if self._user_log else ""
        return pick.strip()[:300] + where


# E... model_lifecycle.cc:642] "failed to load 'broken' version 1: Internal: KeyError: ...\n..."
_FAILED_LOAD = re.compile(r"failed to load '(?P<model>[^']+)' version \d+: (?P<why>[^\\\"]+)")
