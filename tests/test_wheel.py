"""The package as a new user installs it: a built wheel, a fresh venv, commands from an empty dir.

Everything else in the suite runs against the editable install, where a missing module, a file
left out of the package data or a path computed from the source tree goes unnoticed. Here the
wheel is built from a copy of the repo's sources (building in place would write build/ and
*.egg-info into the repo, and a stale build/lib from `make lint` would leak into the wheel),
inspected, and installed with ``pip install --no-deps`` into a new venv outside the repo.

Installing the dependencies from PyPI would take minutes and hundreds of MB (nvidia-pytriton
alone is large), so the new venv shares the dev venv's: a plain ``.pth`` file in its
site-packages holds the path of the dev venv's site-packages. A path line in a ``.pth`` is only
appended to ``sys.path``; the ``.pth`` files inside that folder (among them the editable
install's finder) are not executed, so the repo's editable tritonload stays invisible. The test
checks that assumption before relying on it: ``tritonload``, ``tritonload.analysis`` and
``tritonload.locustfiles`` must resolve inside the new venv, and ``import analysis`` must fail.

Then, from an empty working directory, the new venv's ``tritonload probe`` and a 3-second
``tritonload run`` each start the embedded Triton on free ports (never the session server's),
and must leave no server, stub or Locust process behind.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pandas as pd
import psutil
import pytest

from tests.conftest import free_ports
from tritonload.server import demo_fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
# The repo's source folders and where each lands in the installed package.
SOURCES = {"tritonload": "tritonload", "analysis": "tritonload/analysis",
           "locustfiles": "tritonload/locustfiles"}
NOT_SOURCES = (".venv", "venv", ".git", "build", "dist", "*.egg-info", "runs", "reports",
               "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache")
# locustfiles/mixed_models.py
MIX_MODELS = {"text_classifier", "image_classifier", "image_pipeline", "recommender"}
COMMAND_TIMEOUT_S = 240  # bound only; both commands take ~10-20 s on an idle 2-core machine

# Run in the new venv from the empty directory: where everything resolves, as JSON.
PROBE_IMPORTS = """
import importlib, json
import tritonload, tritonload.analysis, tritonload.locustfiles
from tritonload.cli.headless import resolve_scenario
from tritonload.server.launcher import MODEL_CODE
found = {}
for name in ("analysis", "locustfiles"):
    try:
        found[name] = importlib.import_module(name).__file__
    except ImportError:
        found[name] = None
print(json.dumps({
    "tritonload": tritonload.__file__,
    "tritonload.analysis": tritonload.analysis.__file__,
    "tritonload.locustfiles": tritonload.locustfiles.__file__,
    "scenario": str(resolve_scenario("mixed_models")),
    "model_code": str(MODEL_CODE),
    "generic": found,
}))
"""


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (
        f"{' '.join(map(str, proc.args))} exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def _ours(marker: str) -> list[str]:
    """Live processes whose command line mentions ``marker`` (our temporary tree)."""
    left = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(marker in arg for arg in proc.info["cmdline"] or ()):
            left.append(f"{proc.info['pid']} {proc.info['name']}")
    return left


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the copy of the sources it was built from)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
              "--no-build-isolation", "--wheel-dir", str(root / "dist"), str(src)],
             timeout=180))
    (built,) = (root / "dist").glob("tritonload-*.whl")
    return built, src


@pytest.fixture(scope="module")
def venv(wheel: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the repo: the wheel installed, the dependencies shared (see top)."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", str(root)], timeout=120))
    python = root / "bin" / "python"
    # Install before the .pth exists, so pip sees an empty environment (with the dev venv on
    # its path it would find tritonload 0.1.0 already installed and skip the wheel).
    _ok(_run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
              "--no-deps", "--no-index", str(wheel[0])], timeout=180))
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(_ok(_run([str(python), "-c", purelib], timeout=60)).strip())
    (site / "_tritonload_dev_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return root


def _env(venv: Path, tmpdir: Path) -> dict[str, str]:
    """The environment of a user who activated the new venv; TMPDIR marks our processes."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}",
               TMPDIR=str(tmpdir))
    return env


def _ports(start: int) -> list[str]:
    http, grpc, metrics = free_ports(start=start)
    return ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]


def test_wheel_contents(wheel: tuple[Path, Path]) -> None:
    built, src = wheel
    with zipfile.ZipFile(built) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
    repeated = [n for n, count in collections.Counter(names).items() if count > 1]
    assert not repeated, f"files in the wheel twice: {repeated}"
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"tritonload"}, tops
    assert not [n for n in names if n.startswith(("analysis/", "locustfiles/", "tests/"))]

    # Every source file (code and data) of the three folders ships, where the package expects
    # it: a subpackage missing from [tool.setuptools] packages fails here.
    expected = {
        f"{dest}/{path.relative_to(src / folder).as_posix()}"
        for folder, dest in SOURCES.items()
        for path in (src / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        and not (folder == "tritonload" and path.relative_to(src / folder).parts[0]
                 in ("analysis", "locustfiles"))
    }
    shipped = {n for n in names if n.startswith("tritonload/")}
    missing, extra = sorted(expected - shipped), sorted(shipped - expected)
    assert not missing, f"source files missing from the wheel: {missing}"
    assert not extra, f"files in the wheel that are not in the sources: {extra}"
    for module in ("locustfiles/mixed_models.py", "locustfiles/bench.py",
                   "analysis/report.py", "server/model_code/model.py",
                   "server/model_code/demo_functions.py"):
        assert f"tritonload/{module}" in shipped
    assert any(re.fullmatch(r"tritonload/analysis/\w+\.py", n) for n in shipped)


def test_installed_package_resolves_inside_the_venv(venv: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "empty"
    cwd.mkdir()
    out = _ok(_run([str(venv / "bin" / "python"), "-c", PROBE_IMPORTS], cwd=cwd,
                   env=_env(venv, tmp_path), timeout=120))
    where = json.loads(out.strip().splitlines()[-1])
    site = str(venv.resolve()) + "/"
    for key in ("tritonload", "tritonload.analysis", "tritonload.locustfiles", "scenario",
                "model_code"):
        path = str(Path(where[key]).resolve())
        assert path.startswith(site), f"{key} resolves outside the new venv: {path}"
        assert not path.startswith(str(REPO) + "/"), f"{key} resolves into the repo: {path}"
    assert where["generic"] == {"analysis": None, "locustfiles": None}, where["generic"]


def test_probe_and_run_from_an_empty_directory(venv: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "empty"
    cwd.mkdir()
    tmpdir = tmp_path / "tmp"  # the embedded server's workspace lands here
    tmpdir.mkdir()
    env = _env(venv, tmpdir)
    tritonload = str(venv / "bin" / "tritonload")

    probe = _ok(_run([tritonload, "probe", "--repeats", "1", *_ports(19300)],
                     cwd=cwd, env=env, timeout=COMMAND_TIMEOUT_S))
    rows = set()
    for line in probe.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 7:  # │ model │ protocol │ latency_ms │ response_bytes │ status │
            rows.add((cells[1], cells[2], cells[5]))
    expected = {(spec.name, p, "ok") for spec in demo_fleet() for p in ("grpc", "http")}
    assert expected <= rows, f"probe rows not ok:\n{probe}"
    assert _ours(str(tmp_path)) == [], "processes left behind by probe"
    assert list(tmpdir.glob("tritonload-server-*")) == [], "server workspace left behind"

    ports = _ports(19310)
    _ok(_run([tritonload, "run", "-u", "2", "-t", "3s", *ports],
             cwd=cwd, env=env, timeout=COMMAND_TIMEOUT_S))
    assert _ours(str(tmp_path)) == [], "processes left behind by run"
    assert list(tmpdir.glob("tritonload-server-*")) == [], "server workspace left behind"

    (run_dir,) = (cwd / "runs").iterdir()
    assert run_dir.name.endswith("-mixed_models")
    records = pd.read_parquet(run_dir / "requests")
    assert len(records) > 0
    assert records["ok"].all(), records.loc[~records["ok"], "error_kind"].value_counts()
    assert set(records["model"]) <= MIX_MODELS
    assert set(records["protocol"]) == {"grpc", "http"}
    run_json = json.loads((run_dir / "run.json").read_text())
    assert run_json["request_count"] == len(records)
    assert f"127.0.0.1:{ports[1]}" in run_json["target"]["url"]  # the server run started
    assert run_json["target"]["embedded"] is True  # started by the CLI, not the child
