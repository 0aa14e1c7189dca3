"""A real, non-Triton KServe v2 server (kserve's own ModelServer) as a test peer.

Why: tritonload should drive any KServe-v2 server, not just Triton, and the honest check is a
second, independent implementation of the protocol. kserve 0.21.0 needs numpy 2, while the main
venv is held at numpy<2 (nvidia-pytriton), so ``server.py`` runs from its own venv, built once
into ``~/.cache/tritonload/kserve-peer-<hash>`` (``$TRITONLOAD_CACHE`` replaces the parent
folder) and reused while its ``.complete`` marker exists. The marker is written only after a
successful install, so a half-built venv is rebuilt; an ``fcntl`` lock keeps two pytest
processes from building at once. Measured on this 2-core machine with an empty pip cache: a
cold build takes 41-45 s and leaves 412 MiB (451 MB on disk; kubernetes, pandas and numpy are
two thirds of it, all hard dependencies of kserve); later, the server is ready in 1-3 s.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# Everything the peer venv gets; its hash names the cache folder, so editing it rebuilds.
REQUIREMENTS = ("kserve==0.21.0",)
SERVER = Path(__file__).with_name("server.py")
MARKER = ".complete"


def _log(message: str) -> None:
    print(f"kserve-peer: {message}", file=sys.stderr, flush=True)


def venv_dir() -> Path:
    """The peer venv's cache folder, named by the requirements and this Python's version."""
    parent = Path(os.environ.get("TRITONLOAD_CACHE", Path.home() / ".cache" / "tritonload"))
    key = "\n".join([*REQUIREMENTS, f"py{sys.version_info[0]}.{sys.version_info[1]}"])
    return parent / f"kserve-peer-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def ensure_venv() -> Path:
    """The peer venv, built on first use (under a lock) and reused once marked complete."""
    venv = venv_dir()
    if (venv / MARKER).exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(venv.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"waiting for another process to finish building {venv}")
            fcntl.flock(lock, fcntl.LOCK_EX)  # then it finds the marker
        if (venv / MARKER).exists():
            return venv
        if venv.exists():
            _log(f"removing half-built {venv}")
            shutil.rmtree(venv)
        started = time.monotonic()
        _log(f"building {venv} with {' '.join(REQUIREMENTS)} (once; about a minute)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        log = venv / "pip-install.log"
        with open(log, "w") as out:
            done = subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-input",
                 *REQUIREMENTS], stdout=out, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pip install into {venv} failed ({done.returncode}):\n"
                               + _tail(log))
        size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
        _log(f"built in {time.monotonic() - started:.0f} s, {size / 2**20:.0f} MiB")
        (venv / MARKER).write_text(f"{' '.join(REQUIREMENTS)}\n")
    return venv


def _tail(path: Path, lines: int = 30) -> str:
    """The log's ERROR lines (kserve buries them under asyncio tracebacks), then its tail."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    errors = [line for line in text if "ERROR" in line][:5]
    return "\n".join([*errors, f"--- last lines of {path}:", *text[-lines:]])


def _accepts_bind(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is ok
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_pair(start: int = 18600, stop: int = 19600) -> tuple[int, int]:
    """Two adjacent free ports, HTTP then gRPC: kserve's and MLServer's layout (8080, 8081),
    and what a ``--url host:port`` target means (gRPC on the next port)."""
    for port in range(start, stop, 2):
        if _accepts_bind(port) and _accepts_bind(port + 1):
            return port, port + 1
    raise RuntimeError(f"kserve peer: no two adjacent free ports in {start}..{stop}")


class Peer:
    """A running ``server.py``: ``http_url``, ``grpc_url``, ``stop()``; a context manager."""

    def __init__(self, proc: subprocess.Popen, http_port: int, grpc_port: int, log: Path):
        self.proc, self.http_port, self.grpc_port, self.log = proc, http_port, grpc_port, log
        self.http_url = f"127.0.0.1:{http_port}"
        self.grpc_url = f"127.0.0.1:{grpc_port}"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``timeout``; idempotent."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_peer(http_port: int | None = None, grpc_port: int | None = None, *,
               delay_ms: float = 0.0, log: Path | None = None, timeout: float = 60.0) -> Peer:
    """Start the peer on 127.0.0.1 and wait until HTTP is ready and gRPC accepts connections."""
    python = ensure_venv() / "bin" / "python"
    http_port, grpc_port = http_port or free_port(), grpc_port or free_port()
    for port in (http_port, grpc_port):  # else readiness could be another server's answer
        if not _accepts_bind(port):
            raise RuntimeError(f"kserve peer: port {port} on 127.0.0.1 is busy")
    if log is None:
        log = Path(tempfile.mkstemp(prefix=f"kserve-peer-{http_port}-", suffix=".log")[1])
    cmd = [str(python), str(SERVER), "--http_port", str(http_port), "--grpc_port",
           str(grpc_port), "--delay-ms", str(delay_ms)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    peer = Peer(proc, http_port, grpc_port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kserve peer exited with {proc.returncode}:\n{_tail(log)}")
        if _http_ready(http_port) and _accepts(grpc_port) and proc.poll() is None:
            return peer
        time.sleep(0.2)
    peer.stop()
    raise RuntimeError(f"kserve peer not ready after {timeout:.0f} s:\n{_tail(log)}")


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def _http_ready(port: int) -> bool:
    try:
        with _DIRECT.open(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
