"""Run directories: where each run's records live, and its ``run.json`` metadata."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
from importlib import metadata
from pathlib import Path
from typing import Any

FORMAT = "tritonload-run"
FORMAT_VERSION = 1


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-<hex>``, sortable and unique."""
    return f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def iso(ns: int) -> str:
    """Wall-clock ns as ISO-8601 UTC."""
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat(timespec="milliseconds")


def tool_versions() -> dict[str, str]:
    """Versions of everything that shapes the measurement."""
    versions = {"python": platform.python_version()}
    for package in ("tritonload", "locust", "tritonclient", "gevent", "grpcio",
                    "geventhttpclient", "nvidia-pytriton"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def unique_dir(path: str | os.PathLike) -> Path:
    """``path`` if it does not exist yet, else ``path-2``, ``path-3``, ..."""
    base = Path(path)
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    candidate.mkdir(parents=True)
    return candidate


def write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    """Write JSON so that a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, default=str))
    tmp.replace(path)


def write_run_json(run_dir: Path, info: dict[str, Any]) -> None:
    """Write run.json, stamped with the format and its version."""
    write_json_atomic(run_dir / "run.json",
                      {"format": FORMAT, "format_version": FORMAT_VERSION, **info})
