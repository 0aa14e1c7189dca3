"""deploy/: the Kubernetes manifests parse, and every `tritonload` command in them is one the CLI
accepts, wired to Services, volumes and a worker count that the manifests themselves define.

All checks live in `problems(docs)`, which returns what is wrong. The manifests as shipped must
give none; every planted fault in BROKEN must be reported, so a check that quietly stopped
checking fails here too. Only the CLI's parser and its pure validators run: nothing starts,
and Locust is never imported (it would monkey-patch this process).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from tritonload.cli.commands.process_options import check_worker_args, processes_from_args
from tritonload.cli.headless import GRACE_S, parse_duration, resolve_scenario
from tritonload.cli.main import build_parser
from tritonload.core.config import Target
from tritonload.core.errors import UsageError
from tritonload.core.slo import parse_slos

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
MANIFESTS = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
DOCKERFILE = DEPLOY / "Dockerfile"

# Objects whose pods run containers: where the pod template is, and how many pods run at once.
TEMPLATE_KINDS = {"Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Job", "CronJob"}

Doc = tuple[str, dict[str, Any]]  # (file name, one YAML document)


# -- reading the manifests -----------------------------------------------------------------


@dataclass(eq=False)
class Pod:
    """One pod template (or bare Pod) of the manifests."""

    where: str
    owner: dict[str, Any]
    spec: dict[str, Any]
    labels: dict[str, str]
    count: int | None  # pods running at once; None: one per node (DaemonSet)

    def containers(self) -> list[dict[str, Any]]:
        return [*self.spec.get("initContainers", []), *self.spec.get("containers", [])]


@dataclass(eq=False)
class Command:
    """A container whose command is `tritonload ...`, parsed by the CLI."""

    where: str
    pod: Pod
    container: dict[str, Any]
    argv: list[str]
    args: argparse.Namespace


def load(paths: list[Path]) -> list[Doc]:
    docs = []
    for path in paths:
        with path.open() as stream:
            docs += [(path.name, doc) for doc in yaml.safe_load_all(stream) if doc is not None]
    return docs


def _job_count(job_spec: dict[str, Any]) -> int:
    parallelism = job_spec.get("parallelism", 1)
    return min(parallelism, job_spec.get("completions", parallelism))


def pods_of(docs: list[Doc]) -> list[Pod]:
    pods = []
    for file, doc in docs:
        if not isinstance(doc, dict):
            continue  # reported by check_objects
        kind, spec = doc.get("kind"), doc.get("spec") or {}
        where = f"{file}: {kind}/{doc.get('metadata', {}).get('name')}"
        if kind == "Pod":
            pods.append(Pod(where, doc, spec, doc.get("metadata", {}).get("labels", {}), 1))
            continue
        if kind not in TEMPLATE_KINDS:
            continue
        if kind == "CronJob":
            spec = spec.get("jobTemplate", {}).get("spec", {})
        template = spec.get("template", {})
        if kind in ("Job", "CronJob"):
            count = _job_count(spec)
        elif kind == "DaemonSet":
            count = None
        else:
            count = spec.get("replicas", 1)
        labels = template.get("metadata", {}).get("labels", {})
        pods.append(Pod(where, doc, template.get("spec", {}), labels, count))
    return pods


def _by_kind(docs: list[Doc], kind: str) -> dict[str, dict[str, Any]]:
    return {doc.get("metadata", {}).get("name"): doc for _, doc in docs
            if isinstance(doc, dict) and doc.get("kind") == kind}


def _parse(argv: list[str]) -> tuple[argparse.Namespace | None, str]:
    """The CLI's own parser on ``argv`` (without the leading ``tritonload``)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            return build_parser().parse_args(argv), ""
        except SystemExit:
            return None, " ".join(stderr.getvalue().split())


# -- the checks ----------------------------------------------------------------------------


class Checker:
    """Collects the problems of one set of manifests."""

    def __init__(self, docs: list[Doc]) -> None:
        self.docs = docs
        self.found: list[str] = []
        self.pods = pods_of(docs)
        self.services = _by_kind(docs, "Service")
        self.claims = set(_by_kind(docs, "PersistentVolumeClaim"))
        self.config_maps = _by_kind(docs, "ConfigMap")
        self.refused: set[int] = set()  # pods with a tritonload command the CLI refused

    def problem(self, text: str) -> None:
        self.found.append(text)

    # -- objects and containers

    def check_objects(self) -> None:
        for file, doc in self.docs:
            if not isinstance(doc, dict) or not all(doc.get(k) for k in ("apiVersion", "kind")):
                self.problem(f"{file}: a document without apiVersion and kind")
                continue
            if not doc.get("metadata", {}).get("name"):
                self.problem(f"{file}: a {doc['kind']} without metadata.name")
            selector = (doc.get("spec") or {}).get("selector", {}).get("matchLabels")
            if doc["kind"] in TEMPLATE_KINDS - {"Job", "CronJob"} and selector:
                labels = doc["spec"].get("template", {}).get("metadata", {}).get("labels", {})
                if not selector.items() <= labels.items():
                    self.problem(f"{file}: {doc['kind']}/{doc['metadata'].get('name')}: "
                                 "selector.matchLabels does not match the pod template's labels")

    def commands(self) -> list[Command]:
        found = []
        for pod in self.pods:
            for container in pod.containers():
                where = f"{pod.where} container {container.get('name')}"
                argv = [*container.get("command", []), *container.get("args", [])]
                if _image_name(container.get("image", "")) == "tritonload" and not argv:
                    self.problem(f"{where}: the tritonload image has no entrypoint; give the "
                                 "container an explicit command")
                if not all(isinstance(arg, str) for arg in argv):
                    self.problem(f"{where}: command items must be strings (quote numbers): "
                                 f"{argv}")
                    continue
                if not argv or argv[0] != "tritonload":
                    if any(re.search(r"(^|[\s;&|(])tritonload\s+\w", arg) for arg in argv):
                        self.problem(f"{where}: tritonload wrapped in another command; keep "
                                     "`tritonload ...` as the command list itself")
                    continue
                if _image_name(container.get("image", "")) != "tritonload":
                    self.problem(f"{where}: runs tritonload in image {container.get('image')!r}")
                args, error = _parse(argv[1:])
                if args is None:
                    self.problem(f"{where}: `{' '.join(argv)}` is refused by the CLI: {error}")
                    self.refused.add(id(pod))
                    continue
                found.append(Command(where, pod, container, argv, args))
        return found

    # -- references between objects

    def service(self, where: str, flag: str, host: str) -> dict[str, Any] | None:
        """The Service of the manifests that ``host`` names (name, name.ns, name.ns.svc...)."""
        name, *rest = host.split(".")
        service = self.services.get(name)
        if service is not None and rest:
            namespace = service["metadata"].get("namespace")
            if (namespace and rest[0] != namespace) or (rest[1:] and rest[1] != "svc"):
                service = None
        if service is None:
            self.problem(f"{where}: {flag} {host}: no Service of that name in the manifests "
                         f"(Services: {', '.join(sorted(self.services)) or 'none'})")
        return service

    def selected(self, service: dict[str, Any]) -> list[Pod]:
        """The pods of the manifests that ``service``'s selector picks."""
        selector = service.get("spec", {}).get("selector") or {}
        return [pod for pod in self.pods if selector and selector.items() <= pod.labels.items()]

    def endpoints(self, where: str, flag: str, service: dict[str, Any],
                  port: int) -> list[tuple[Pod, int]]:
        """The pods behind ``service``'s ``port``, each with the container port it reaches."""
        name = service["metadata"]["name"]
        ports = {p.get("port"): p for p in service.get("spec", {}).get("ports", [])}
        if port not in ports:
            self.problem(f"{where}: {flag}: Service {name} has no port {port} "
                         f"(ports: {sorted(ports)})")
            return []
        target = ports[port].get("targetPort", port)
        selected = self.selected(service)
        if not selected:
            self.problem(f"{where}: {flag}: Service {name} selects no pod of the manifests")
        found = []
        for pod in selected:
            numbers = [cp["containerPort"] for c in pod.spec.get("containers", [])
                       for cp in c.get("ports", [])
                       if target in (cp.get("name"), cp.get("containerPort"))]
            if not numbers:
                self.problem(f"{where}: {flag}: Service {name} port {port} targets {target!r}, "
                             f"which no container of {pod.where} exposes")
            found += [(pod, number) for number in numbers]
        return found

    def check_url(self, command: Command) -> None:
        url = command.args.url
        try:
            target = Target.parse(url)
        except UsageError as exc:
            self.problem(f"{command.where}: {exc}")
            return
        service = self.service(command.where, "--url", target.host)
        if service is None:
            return
        for protocol, port in (("HTTP", target.http_port), ("gRPC", target.grpc_port)):
            if port is not None:
                self.endpoints(command.where, f"--url {url} ({protocol} on {port})", service, port)

    def check_on_claim(self, command: Command, flag: str, path: str) -> None:
        """``path`` must lie inside a writable mount of a claim the manifests define."""
        where, posix = f"{command.where}: {flag} {path}", PurePosixPath(path)
        if not posix.is_absolute():
            self.problem(f"{where}: relative, so it lands in the container's own filesystem "
                         "and is lost with the pod")
            return
        mounts = [m for m in command.container.get("volumeMounts", [])
                  if posix != PurePosixPath(m["mountPath"])
                  and posix.is_relative_to(m["mountPath"])]
        if not mounts:
            self.problem(f"{where}: lies on no mounted volume, so it is lost with the pod")
            return
        mount = max(mounts, key=lambda m: len(PurePosixPath(m["mountPath"]).parts))
        volume = next((v for v in command.pod.spec.get("volumes", [])
                       if v.get("name") == mount["name"]), None)
        claim = (volume or {}).get("persistentVolumeClaim")
        if claim is None:
            self.problem(f"{where}: volume {mount['name']!r} is not a PersistentVolumeClaim")
        elif claim.get("claimName") not in self.claims:
            self.problem(f"{where}: claim {claim.get('claimName')!r} is not defined in the "
                         "manifests")
        elif mount.get("readOnly") or claim.get("readOnly"):
            self.problem(f"{where}: volume {mount['name']!r} is mounted read-only")

    def check_scenario(self, command: Command) -> None:
        scenario = command.args.scenario
        with contextlib.suppress(UsageError):
            resolve_scenario(scenario)  # a shipped name (or a path that exists here)
            return
        posix = PurePosixPath(scenario)
        for mount in command.container.get("volumeMounts", []):
            if posix.parent != PurePosixPath(mount["mountPath"]):
                continue
            volume = next((v for v in command.pod.spec.get("volumes", [])
                           if v.get("name") == mount["name"]), {})
            config_map = self.config_maps.get(volume.get("configMap", {}).get("name"))
            if config_map and posix.name in config_map.get("data", {}):
                return
        self.problem(f"{command.where}: no scenario {scenario!r}: neither a shipped scenario "
                     "nor a file of a ConfigMap mounted in the container")

    # -- the run: master, workers, single process

    def check_worker(self, command: Command) -> tuple[Pod, int] | None:
        """A worker's flags; returns the pod its --master-host reaches, and the port there."""
        args = command.args
        try:
            check_worker_args(args)  # the CLI's own rule
        except UsageError as exc:
            self.problem(f"{command.where}: {exc}")
            if not args.master_host:
                return None
        service = self.service(command.where, "--master-host", args.master_host)
        if service is None:
            return None
        flag = f"--master-host {args.master_host} --master-port {args.master_port}"
        reached = self.endpoints(command.where, flag, service, args.master_port)
        selected = self.selected(service)
        if len(selected) > 1:
            self.problem(f"{command.where}: {flag}: Service {service['metadata']['name']} "
                         f"selects {len(selected)} pod templates ("
                         f"{', '.join(pod.where for pod in selected)}); it must select the "
                         "master's alone")
            return None
        return reached[0] if reached else None

    def check_run(self, command: Command) -> None:
        """A master's or single process's flags, as `tritonload run` checks them."""
        args = command.args
        try:
            processes_from_args(args)
            parse_slos(args.slo, args.min_rps)
            parse_duration(args.duration)
            if args.users < 1:
                raise UsageError("--users must be >= 1")
        except UsageError as exc:
            self.problem(f"{command.where}: {exc}")
        if not args.url:
            self.problem(f"{command.where}: no --url: the run would start an embedded server "
                         "inside the pod instead of loading the Triton Service")
        if not args.run_dir:
            self.problem(f"{command.where}: no --run-dir: the default is relative to the "
                         "working directory, inside the container")
        for flag, path in (("--run-dir", args.run_dir), ("--report", args.report)):
            if path:
                self.check_on_claim(command, flag, path)

    def check_master(self, master: Command, workers: list[tuple[Command, int]]) -> None:
        """The master's Job, and that its workers reach its port and add up to its count."""
        args, owner = master.args, master.pod.owner
        if owner.get("kind") != "Job":
            self.problem(f"{master.where}: a master runs once; make it a Job, not a "
                         f"{owner.get('kind')}")
        else:
            if owner["spec"].get("backoffLimit") != 0:
                self.problem(f"{master.where}: backoffLimit must be 0: a retry finds its run "
                             "directory taken, and exit code 3 (an SLO breach) is a verdict")
            if master.pod.spec.get("restartPolicy") != "Never":
                self.problem(f"{master.where}: restartPolicy must be Never")
        sent = 0
        for worker, port in workers:
            if port != args.master_port:
                self.problem(f"{master.where}: --master-port {args.master_port}, but the "
                             f"workers' Service reaches container port {port}")
            if worker.args.scenario != args.scenario:
                self.problem(f"{worker.where}: scenario {worker.args.scenario!r}, the master "
                             f"runs {args.scenario!r}")
            if worker.container.get("image") != master.container.get("image"):
                self.problem(f"{worker.where}: image {worker.container.get('image')!r}, the "
                             f"master runs {master.container.get('image')!r}")
            if worker.pod.count is None:
                self.problem(f"{worker.where}: a DaemonSet's worker count is unknown")
                continue
            sent += worker.pod.count * max(worker.args.processes, 1)
        if args.expect_workers and sent != args.expect_workers:
            self.problem(f"{master.where}: --expect-workers {args.expect_workers}, but the "
                         f"manifests start {sent} worker process(es) for it (pods x "
                         "--processes; each process is one Locust worker)")
        with contextlib.suppress(UsageError):
            needed = parse_duration(args.duration) + args.worker_wait + GRACE_S
            for command in [master, *(worker for worker, _ in workers)]:
                deadline = command.pod.owner.get("spec", {}).get("activeDeadlineSeconds")
                if deadline is not None and deadline < needed:
                    self.problem(f"{command.where}: activeDeadlineSeconds {deadline} ends the "
                                 f"run early: it needs {needed:g} s (--duration + "
                                 f"--worker-wait + {GRACE_S:g} s)")

    def run(self) -> list[str]:
        self.check_objects()
        commands = self.commands()
        masters = [c for c in commands if c.args.command == "run" and c.args.master]
        workers_of: dict[int, list[tuple[Command, int]]] = {id(c.pod): [] for c in masters}
        for command in commands:
            if getattr(command.args, "url", None):
                self.check_url(command)
            if command.args.command != "run":
                continue
            self.check_scenario(command)
            if not command.args.worker:
                self.check_run(command)
                continue
            reached = self.check_worker(command)
            if reached is None:
                continue
            pod, port = reached
            if id(pod) in self.refused:
                continue  # already reported: the CLI refuses its command
            if id(pod) not in workers_of:
                self.problem(f"{command.where}: --master-host {command.args.master_host} "
                             f"reaches {pod.where}, which runs no `tritonload run --master`")
                continue
            workers_of[id(pod)].append((command, port))
        for master in masters:
            workers = workers_of[id(master.pod)]
            if not workers:
                self.problem(f"{master.where}: no worker in the manifests connects to it")
            self.check_master(master, workers)
        return self.found


def problems(docs: list[Doc]) -> list[str]:
    return Checker(docs).run()


def _image_name(image: str) -> str:
    """``registry/path/name:tag`` → ``name``."""
    return image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]


def dockerfile_problems(text: str) -> list[str]:
    """The image must install this package, on a Python it supports, with no entrypoint."""
    found = []
    lines = [ln.strip() for ln in re.sub(r"\\\n", " ", text).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    if any(ln.upper().startswith("ENTRYPOINT") for ln in lines):
        found.append("Dockerfile: no ENTRYPOINT: the manifests give every command in full")
    bases = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM")]
    match = re.fullmatch(r"python:(\d+\.\d+)\S*", bases[-1]) if bases else None
    if not match:
        found.append(f"Dockerfile: base image {bases[-1] if bases else None!r} is not python:X.Y")
    elif match[1] not in SpecifierSet(pyproject["project"]["requires-python"]):
        found.append(f"Dockerfile: Python {match[1]} is outside the project's requires-python")
    if not any(re.search(r"\bpip install\b(.*\s)?\.(\s|$)", ln) for ln in lines
               if ln.upper().startswith("RUN")):
        found.append("Dockerfile: no `pip install .` of the repository")
    copied = set()
    for ln in lines:
        if ln.upper().startswith(("COPY", "ADD")):
            sources = [t for t in ln.split()[1:-1] if not t.startswith("--")]
            copied |= {t.removeprefix("./").rstrip("/") or "." for t in sources}
    setuptools = pyproject["tool"]["setuptools"]
    needed = {"pyproject.toml", pyproject["project"]["readme"]}
    needed |= {setuptools["package-dir"].get(p, p.split(".")[0]).split("/")[0]
               for p in setuptools["packages"]}
    if "." not in copied:
        found += [f"Dockerfile: does not COPY {name}, which the package is built from"
                  for name in sorted(needed - copied)]
    return found


# -- tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return load(MANIFESTS)


def test_deploy_has_manifests_with_a_master_and_workers(docs: list[Doc]) -> None:
    assert MANIFESTS, f"no *.yaml under {DEPLOY}"
    checker = Checker(docs)
    runs = [c.args for c in checker.commands() if c.args.command == "run"]
    assert any(a.master for a in runs) and any(a.worker for a in runs), runs


def test_manifests_agree_with_the_cli_and_each_other(docs: list[Doc]) -> None:
    found = problems(docs)
    assert not found, "\n".join(found)


def test_dockerfile_installs_the_package() -> None:
    found = dockerfile_problems(DOCKERFILE.read_text())
    assert not found, "\n".join(found)


# Planted faults: each must be reported (a substring of its problem).


def _find(docs: list[Doc], kind: str, name: str) -> dict[str, Any]:
    return next(d for _, d in docs if d.get("kind") == kind and d["metadata"]["name"] == name)


def _container(docs: list[Doc], kind: str, name: str) -> dict[str, Any]:
    return _find(docs, kind, name)["spec"]["template"]["spec"]["containers"][0]


def _master(docs: list[Doc]) -> list[Any]:
    return _container(docs, "Job", "tritonload-master")["command"]


def _worker(docs: list[Doc]) -> list[Any]:
    return _container(docs, "Job", "tritonload-workers")["command"]


def _set(command: list[Any], flag: str, value: Any) -> None:
    command[command.index(flag) + 1] = value


def _drop(command: list[Any], flag: str) -> None:
    del command[command.index(flag):command.index(flag) + 2]


def _rename(command: list[Any], old: str, new: str) -> None:
    command[command.index(old)] = new


def _runs_volume(docs: list[Doc]) -> dict[str, Any]:
    spec = _find(docs, "Job", "tritonload-master")["spec"]["template"]["spec"]
    return next(v for v in spec["volumes"] if v["name"] == "runs")


BROKEN: dict[str, tuple[Callable[[list[Doc]], None], str]] = {
    "flag typo": (lambda d: _rename(_master(d), "--run-dir", "--rundir"),
                  "unrecognized arguments: --rundir"),
    "bad SLO": (lambda d: _set(_master(d), "--slo", "p95=50"), "give a latency unit"),
    "unknown scenario": (lambda d: _set(_master(d), "run", "mixed_model"), "no scenario"),
    "master without --expect-workers": (lambda d: _drop(_master(d), "--expect-workers"),
                                        "--master needs --expect-workers"),
    "master without --url": (lambda d: _drop(_master(d), "--url"), "no --url"),
    "Triton port": (lambda d: _set(_master(d), "--url", "triton:9000"), "has no port 9000"),
    "Triton host": (lambda d: _set(_master(d), "--url", "tritonserver:8000"),
                    "--url tritonserver: no Service"),
    "run dir off the claim": (lambda d: _set(_master(d), "--run-dir", "/tmp/run"),
                              "lies on no mounted volume"),
    "runs volume not a claim": (lambda d: _runs_volume(d).update(
        {"persistentVolumeClaim": None, "emptyDir": {}}), "is not a PersistentVolumeClaim"),
    "report dir relative": (lambda d: _set(_master(d), "--report", "report"),
                            "--report report: relative"),
    "master port": (lambda d: _set(_master(d), "--master-port", "5558"),
                    "--master-port 5558, but the workers' Service reaches container port 5557"),
    "master retried": (lambda d: _find(d, "Job", "tritonload-master")["spec"].update(
        backoffLimit=2), "backoffLimit must be 0"),
    "deadline too short": (lambda d: _find(d, "Job", "tritonload-workers")["spec"].update(
        activeDeadlineSeconds=300), "activeDeadlineSeconds 300 ends the run early"),
    "worker count": (lambda d: _find(d, "Job", "tritonload-workers")["spec"].update(
        parallelism=3), "--expect-workers 4, but the manifests start 3"),
    "worker --processes": (lambda d: _worker(d).extend(["--processes", "2"]),
                           "--expect-workers 4, but the manifests start 8"),
    "worker without --master-host": (lambda d: _drop(_worker(d), "--master-host"),
                                     "--worker needs --master-host"),
    "worker's master misspelt": (lambda d: _set(_worker(d), "--master-host", "tritonload-mastr"),
                                 "--master-host tritonload-mastr: no Service"),
    "worker with --url": (lambda d: _worker(d).extend(["--url", "triton:8000"]), "drop --url"),
    "worker scenario": (lambda d: _set(_worker(d), "run", "bench"), "scenario 'bench'"),
    "number not quoted": (lambda d: _set(_worker(d), "--master-port", 5557), "must be strings"),
    "master Service selects workers too": (lambda d: _find(d, "Service", "tritonload-master")[
        "spec"]["selector"].pop("app.kubernetes.io/component"), "must select the master's alone"),
    "shell-wrapped": (lambda d: _container(d, "Job", "tritonload-workers").update(
        command=["sh", "-c", " ".join(_worker(d))]), "tritonload wrapped in another command"),
}


@pytest.mark.parametrize("fault", BROKEN)
def test_a_broken_manifest_is_reported(docs: list[Doc], fault: str) -> None:
    mutate, expected = BROKEN[fault]
    broken = copy.deepcopy(docs)
    mutate(broken)
    found = problems(broken)
    assert any(expected in line for line in found), "\n".join(found) or "(no problem found)"


def test_services_may_be_named_with_their_namespace(docs: list[Doc]) -> None:
    qualified = copy.deepcopy(docs)
    _set(_worker(qualified), "--master-host", "tritonload-master.loadtest.svc.cluster.local")
    _set(_master(qualified), "--url", "triton.loadtest.svc:8000")
    assert problems(qualified) == []
    _find(qualified, "Service", "triton")["metadata"]["namespace"] = "inference"
    found = problems(qualified)
    assert any("--url triton.loadtest.svc: no Service" in line for line in found), found


@pytest.mark.parametrize(("fault", "edit", "expected"), [
    ("entrypoint", lambda t: t + 'ENTRYPOINT ["tritonload"]\n', "no ENTRYPOINT"),
    ("no install", lambda t: t.replace("pip install .", "pip install tritonload"),
     "no `pip install .`"),
    ("analysis left out", lambda t: t.replace("COPY analysis ./analysis\n", ""),
     "does not COPY analysis"),
    ("old Python", lambda t: re.sub(r"python:3\.\d+", "python:3.9", t), "Python 3.9 is outside"),
])
def test_a_broken_dockerfile_is_reported(fault: str, edit: Callable[[str], str],
                                         expected: str) -> None:
    found = dockerfile_problems(edit(DOCKERFILE.read_text()))
    assert any(expected in line for line in found), "\n".join(found) or "(no problem found)"
