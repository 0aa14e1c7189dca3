"""One Locust process vs ``--processes 2``: client CPU per request, throughput, master overhead.

Under ``--processes N`` the master only takes in its workers' records (Arrow batches in Locust
messages, `tritonload.load.distributed`) and writes the one run directory. This measures what
that costs and whether it loses anything, on this machine (2 shared cores):

* **master CPU per request**: the master's CPU time over the test (run.json ``client_cpu``,
  last sample − first, sampled about once a second by the process itself) ÷ run.json
  ``request_count``. Target (the issue): at most 15 µs per request.
* **worker CPU per request**: the sum over workers of the same (run.json
  ``workers.*.client_cpu``) ÷ ``request_count``; compared with the single process's CPU per
  request it shows what forwarding records adds on the load-generating side.
* **client CPU per request**: every Locust process together (master + workers, or the one
  process).
* **throughput**: ``request_count`` ÷ (last completion − first start of the records, where a
  completion is ``start_ns + service_us``), and the same for the successful records alone
  (``ok/s``); the 2-process/1-process ratio of ``ok/s`` is printed per round, so a client
  failing fast cannot pass for throughput.
* **loss**: records read back from ``requests/`` == run.json ``request_count`` == Locust's own
  ``Aggregated`` count (``locust_stats.csv``) == the sum of the workers' ``records``, and every
  worker ended ``done``.

Both configurations run against one embedded server (the chosen model only, loopback,
``--port`` .. ``--port``+2), interleaved ``--rounds`` times with the same users and requests in
flight (``tritonload run bench --user-class Grpc --mode async``), each bounded by ``-t``. A
sampler also reads, over each test's run.json ``started_ns`` .. ``ended_ns``, the CPU time of
the server's process tree, of the whole ``tritonload run`` tree and of the machine, so the
verdict can say whether the load generator or something else (the server, the shared cores)
set the throughput: on 2 cores shared by client and server, a second Locust process cannot
scale throughput once the cores are full, and the script says so rather than report a ratio
as scaling.

    python benchmarks/distributed_scaling.py [--duration 15] [--rounds 2] [--users 4]
        [--in-flight 8] [--model recommender] [--demo-cost] [--set MODEL.FIELD=VALUE]
        [--port 19100] [--json out.json] [--keep]

The model is ``recommender`` by default, the demo model with the smallest requests and answers
(two 64-float inputs, one float out), served with its simulated accelerator time set to zero
(``cost_base_us`` and ``cost_per_item_us`` 0) unless ``--demo-cost``: with the demo cost its
sleep caps it near 1,600-2,200 req/s, where one Locust process uses about a seventh of a core
and a second process has nothing to relieve. With no sleep the server itself (Triton and its
Python backend, on the same 2 cores) bounds it, at several times that rate, which also puts
the master's messaging under a real load. ``narrow_ranker`` simulates a cheaper
accelerator but answers 14,041 floats (56 KB) per request: both sides would spend their CPU on
bytes rather than on messaging.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from children import busy_cpu, stop_child, tree_cpu  # noqa: E402 (benchmarks/, the script's folder)

TRITONLOAD = Path(sys.executable).with_name("tritonload")
DEFAULT_MODEL = "recommender"
MASTER_TARGET_US = 15.0
CONFIGS = (("1 process", 0), ("2 processes", 2))  # (label, --processes; 0 = one process)
GRACE_S = 90.0  # beyond -t: start-up, pre-flight, forking, the final batches


@dataclass
class Sample:
    """One poll: wall clock (ns), CPU seconds of the server tree, client tree, whole machine."""

    t_ns: int
    server_cpu: float
    client_tree_cpu: float
    busy_cpu: float


@dataclass
class Result:
    """One run of one configuration."""

    config: str
    round: int
    processes: int
    request_count: int = 0
    records: int = 0
    locust_count: int | None = None
    worker_records: int | None = None
    worker_states: dict[str, str] = field(default_factory=dict)
    errors: int = 0
    span_s: float = float("nan")  # first start .. last completion of the records
    rps: float = float("nan")
    ok_rps: float = float("nan")  # successful records ÷ their own first start .. last completion
    client_cpu_us: float = float("nan")  # every Locust process, per request
    worker_cpu_us: float = float("nan")  # the workers (or the one process), per request
    master_cpu_us: float = float("nan")  # the master (2-process case), per request
    client_cores: float = float("nan")  # Locust processes' CPU ÷ test wall time
    tree_cores: float = float("nan")  # the whole `tritonload run` tree, from psutil
    server_cores: float = float("nan")
    server_cpu_us: float = float("nan")
    busy_cores: float = float("nan")  # the machine's busy CPU over the test
    other_cores: float = float("nan")  # busy, neither client tree nor server
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Requests Locust counted (or the run.json count) that have no record."""
        expected = max(self.request_count, self.locust_count or 0, self.worker_records or 0)
        return max(expected - self.records, 0)

    @property
    def consistent(self) -> bool:
        """Every count agrees and every worker ended ``done``."""
        counts = {self.records, self.request_count}
        if self.locust_count is not None:
            counts.add(self.locust_count)
        else:
            return False
        if self.processes:
            counts.add(self.worker_records if self.worker_records is not None else -1)
            if len(self.worker_states) != self.processes:
                return False
            if any(s != "done" for s in self.worker_states.values()):
                return False
        return len(counts) == 1 and self.records > 0


class Sampler(threading.Thread):
    """Polls the server tree's, the client tree's and the machine's CPU time."""

    def __init__(self, server: psutil.Process, client_pid: int, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.server, self.period = server, period
        self.client = psutil.Process(client_pid)
        self.samples: list[Sample] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append(Sample(time.time_ns(), tree_cpu(self.server),
                                       tree_cpu(self.client), busy_cpu()))
            self._halt.wait(self.period)

    def stop(self) -> list[Sample]:
        self._halt.set()
        self.join(5)
        return self.samples


def _cpu_span(samples: list) -> float:
    """Last − first CPU seconds of run.json ``[[wall_ns, cpu_s], ...]`` samples."""
    if not samples or len(samples) < 2:
        return float("nan")
    return float(samples[-1][1]) - float(samples[0][1])


def _locust_count(run_dir: Path) -> int | None:
    import csv

    try:
        with open(run_dir / "locust_stats.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("Name") == "Aggregated":
                    return int(row["Request Count"])
    except (OSError, KeyError, ValueError):
        pass
    return None


def _window(result: Result, samples: list[Sample], start_ns: int, end_ns: int) -> None:
    """Server, client-tree and machine cores over the test, from the sampler."""
    inside = [s for s in samples if start_ns <= s.t_ns <= end_ns]
    if len(inside) < 2:
        result.notes.append(f"only {len(inside)} CPU samples inside the test")
        return
    a, b = inside[0], inside[-1]
    dt = (b.t_ns - a.t_ns) / 1e9
    server = b.server_cpu - a.server_cpu
    tree = b.client_tree_cpu - a.client_tree_cpu
    busy = b.busy_cpu - a.busy_cpu
    result.server_cores = server / dt
    result.tree_cores = tree / dt
    result.busy_cores = busy / dt
    result.other_cores = (busy - server - tree) / dt
    if result.rps == result.rps and result.rps > 0:
        result.server_cpu_us = result.server_cores / result.rps * 1e6


def run_once(label: str, processes: int, round_no: int, args: argparse.Namespace,
             server: psutil.Process, workdir: Path) -> Result:
    """One bounded `tritonload run`, then its run directory read back."""
    result = Result(label, round_no, processes)
    run_dir = workdir / f"r{round_no}-p{processes}"
    cmd = [str(TRITONLOAD), "run", "bench", "--user-class", "Grpc",
           "--url", f"127.0.0.1:{args.port}",
           "-u", str(args.users), "-t", f"{args.duration}s", "--run-dir", str(run_dir),
           "--mode", "async", "--max-in-flight", str(args.in_flight),
           "--mix", f"{args.model}:1",
           *(["--processes", str(processes)] if processes else [])]
    log_path = workdir / f"{run_dir.name}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        sampler = Sampler(server, proc.pid)
        sampler.start()
        stop_child(proc, args.duration + GRACE_S)
        samples = sampler.stop()
    result.exit_code = proc.returncode
    if proc.returncode not in (0, 1):  # 1: Locust saw failed requests (counted below)
        result.notes.append(f"tritonload run exited {proc.returncode} (see {log_path})")
    read_run(result, run_dir, samples)
    return result


def read_run(result: Result, run_dir: Path, samples: list[Sample]) -> None:
    """Fill ``result`` from a run directory (and the sampler's CPU samples over its test)."""
    import pandas as pd

    processes = result.processes
    try:
        doc = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError) as exc:
        result.notes.append(f"no run.json: {exc}")
        return
    result.request_count = int(doc.get("request_count") or 0)
    result.locust_count = _locust_count(run_dir)
    try:
        records = pd.read_parquet(run_dir / "requests",
                                  columns=["start_ns", "service_us", "ok", "worker"])
    except (OSError, ValueError) as exc:
        result.notes.append(f"no records: {exc}")
        records = pd.DataFrame({"start_ns": [], "service_us": [], "ok": [], "worker": []})
    result.records = len(records)
    result.errors = int((~records["ok"].astype(bool)).sum())
    if len(records):
        done_ns = records["start_ns"] + records["service_us"] * 1000
        result.span_s = (float(done_ns.max()) - float(records["start_ns"].min())) / 1e9
        if result.span_s > 0:
            result.rps = result.request_count / result.span_s
        ok = records[records["ok"].astype(bool)]
        if len(ok):
            ok_span = (float((ok["start_ns"] + ok["service_us"] * 1000).max())
                       - float(ok["start_ns"].min())) / 1e9
            result.ok_rps = len(ok) / ok_span if ok_span > 0 else float("nan")

    n = result.request_count
    own_cpu = _cpu_span(((doc.get("client_cpu") or {}).get("samples")) or [])
    workers = doc.get("workers")
    if processes:
        workers = workers or {}
        result.worker_records = sum(int(w.get("records") or 0) for w in workers.values())
        result.worker_states = {k: str(w.get("state")) for k, w in workers.items()}
        for k, w in workers.items():
            if w.get("state") != "done":
                result.notes.append(f"worker {k} (pid {w.get('pid')}) ended {w.get('state')!r} "
                                    f"after {w.get('records')} records: what it had not sent "
                                    "is unaccounted for")
            if not ((w.get("client_cpu") or {}).get("samples")):
                result.notes.append(f"worker {k} sent no CPU samples")
        if len(workers) != processes:
            result.notes.append(f"{len(workers)} workers in run.json, expected {processes}")
        worker_cpu = sum(_cpu_span(((w.get("client_cpu") or {}).get("samples")) or [])
                         for w in workers.values()) if workers else float("nan")
        if n:
            result.master_cpu_us = own_cpu / n * 1e6
            result.worker_cpu_us = worker_cpu / n * 1e6
            result.client_cpu_us = (own_cpu + worker_cpu) / n * 1e6
        total_cpu = own_cpu + worker_cpu
        if len(records) and result.records != records["worker"].notna().sum():
            result.notes.append("records without a worker id")
    else:
        if n:
            result.client_cpu_us = own_cpu / n * 1e6
            result.worker_cpu_us = result.client_cpu_us
        total_cpu = own_cpu
    started, ended = doc.get("started_ns"), doc.get("ended_ns")
    if started and ended:
        result.client_cores = total_cpu / ((ended - started) / 1e9)
        _window(result, samples, int(started), int(ended))
    else:
        result.notes.append("run.json has no started_ns/ended_ns")
    if not result.consistent:
        result.notes.append(f"counts disagree or a worker did not finish (see {run_dir})")


def _fmt(value: float | None, spec: str) -> str:
    if value is None or value != value:  # NaN -> "-"
        return "-"
    return format(value, spec)


def _mean(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else float("nan")


def print_results(results: list[Result], args: argparse.Namespace) -> dict:
    """The table, the per-round ratios and the verdicts; returns the summary."""
    header = (f"{'round':>5} {'config':<11} {'req/s':>7} {'ok/s':>7} {'failed':>7} "
              f"{'client':>7} {'worker':>7} "
              f"{'master':>7} {'records':>8} {'locust':>8} {'run.json':>8} {'lost':>5} "
              f"{'workers':>9} {'cores c/s/o':>15}")
    print()
    cost = "demo fleet's simulated cost" if args.demo_cost else "no simulated cost"
    print(f"{args.model} ({cost}), gRPC async, {args.users} users x {args.in_flight} in flight, "
          f"-t {args.duration}s. req/s = run.json request_count / (first start .. last "
          "completion of the records);")
    print("ok/s = successful records / their own first start .. last completion; "
          "failed = failed records;")
    print("client/worker/master = CPU µs per request: every Locust process / the load-sending "
          "process(es) / the master (run.json client_cpu samples);")
    print("cores c/s/o = Locust processes / server tree / other busy CPU, in cores, over the "
          "test (2 cores on this machine).")
    print(header)
    print("-" * len(header))
    for r in results:
        states = ",".join(sorted(set(r.worker_states.values()))) if r.processes else "-"
        print(f"{r.round:>5} {r.config:<11} {_fmt(r.rps, '7.0f'):>7} "
              f"{_fmt(r.ok_rps, '7.0f'):>7} {r.errors:>7} "
              f"{_fmt(r.client_cpu_us, '7.1f'):>7} {_fmt(r.worker_cpu_us, '7.1f'):>7} "
              f"{_fmt(r.master_cpu_us, '7.2f'):>7} {r.records:>8} "
              f"{_fmt(r.locust_count, 'd'):>8} {r.request_count:>8} {r.lost:>5} "
              f"{states:>9} "
              f"{_fmt(r.client_cores, '.2f')}/{_fmt(r.server_cores, '.2f')}/"
              f"{_fmt(r.other_cores, '.2f'):<4}")
    for r in results:
        for note in r.notes:
            print(f"  round {r.round} {r.config}: {note}")
        if r.errors:
            print(f"  round {r.round} {r.config}: {r.errors} failed requests (req/s counts "
                  "them; ok/s and the ratios below do not)")

    one = [r for r in results if not r.processes]
    two = [r for r in results if r.processes]
    ratios = []
    print()
    for round_no in sorted({r.round for r in results}):
        a = next((r for r in one if r.round == round_no), None)
        b = next((r for r in two if r.round == round_no), None)
        if a and b and a.ok_rps == a.ok_rps and b.ok_rps == b.ok_rps and a.ok_rps > 0:
            ratios.append(b.ok_rps / a.ok_rps)
            print(f"round {round_no}: 2-process / 1-process throughput = {ratios[-1]:.2f} "
                  f"({b.ok_rps:.0f} / {a.ok_rps:.0f} successful req/s)")

    # A run whose counts disagree (a lost worker) has no trustworthy denominator.
    masters = [r.master_cpu_us for r in two
               if r.master_cpu_us == r.master_cpu_us and r.consistent]
    excluded = sum(1 for r in two if not r.consistent)
    worst_master = max(masters) if masters else float("nan")
    master_ok = bool(masters) and worst_master <= MASTER_TARGET_US and not excluded
    loss_ok = bool(results) and all(r.consistent and r.lost == 0 for r in results)
    cpu_one, cpu_two = _mean([r.client_cpu_us for r in one]), _mean([r.client_cpu_us for r in two])
    worker_two = _mean([r.worker_cpu_us for r in two])
    ratio = _mean(ratios)
    print()
    print(f"master CPU per request: worst {_fmt(worst_master, '.2f')} µs over {len(masters)} "
          f"run(s), target <= {MASTER_TARGET_US:g} µs: {'met' if master_ok else 'NOT met'}"
          + (f" ({excluded} 2-process run(s) not judged: their counts disagree)"
             if excluded else ""))
    print("records: " + ("none lost; records == run.json == Locust == workers' sum, every "
                         "worker done, in every run" if loss_ok else
                         "LOSS or disagreement in some run (see the notes above)"))
    failed = sum(r.errors for r in results)
    if failed:
        print(f"failed requests: {failed} in all (see the notes above)")
    if cpu_one == cpu_one and worker_two == worker_two:
        print(f"load-sending CPU per request: 1 process {cpu_one:.1f} µs, 2 workers "
              f"{worker_two:.1f} µs ({worker_two / cpu_one - 1:+.0%}: forwarding records, and two "
              "processes' fixed costs); "
              f"all Locust processes {cpu_two:.1f} µs")
    print(_scaling_verdict(one, two, ratio))
    return {"ratio_mean": ratio, "ratios": ratios, "worst_master_cpu_us": worst_master,
            "master_target_us": MASTER_TARGET_US, "master_ok": master_ok, "loss_ok": loss_ok,
            "client_cpu_us_1": cpu_one, "client_cpu_us_2": cpu_two,
            "worker_cpu_us_2": worker_two}


def _scaling_verdict(one: list[Result], two: list[Result], ratio: float) -> str:
    """What the throughput ratio means, given where the CPU went."""
    if ratio != ratio:
        return "scaling: no throughput ratio (a run failed)"
    cores = psutil.cpu_count() or 2
    busy = _mean([r.busy_cores for r in one + two])
    client_one = _mean([r.client_cores for r in one])
    server = _mean([r.server_cores for r in one + two])
    other = _mean([r.other_cores for r in one + two])
    head = (f"scaling: 2 processes give {ratio:.2f}x the throughput of 1. The machine was "
            f"{_fmt(busy, '.2f')} of {cores} cores busy (server {_fmt(server, '.2f')}, "
            f"others {_fmt(other, '.2f')}); the single Locust process used "
            f"{_fmt(client_one, '.2f')} core. ")
    if busy == busy and busy >= 0.9 * cores:
        return head + ("The cores were full, shared by client and server: the ratio measures "
                       "contention for them, not how far the load generator scales. On this "
                       "machine the server, not the client, bounds throughput; a second "
                       "process only adds its own CPU to the same two cores.")
    if client_one == client_one and client_one < 0.8:
        return head + ("One process was not CPU-bound, so a second cannot raise throughput "
                       "much: the server sets it (or the load level, users x in flight: "
                       "raise --in-flight to tell which), not the load generator. The "
                       "throughput ratio says nothing about how the load generator scales "
                       "here; the CPU per request figures above are what this run measures.")
    if ratio >= 1.5:
        return head + "The load generator was the bottleneck and a second process relieved it."
    return head + "The load generator was busy, yet a second process scaled little."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per run (-t)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds of (1 process, 2 processes)")
    parser.add_argument("--users", type=int, default=4,
                        help="Locust users in total (split over the workers)")
    parser.add_argument("--in-flight", type=int, default=8, help="requests in flight per user")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"demo model to serve and load (default {DEFAULT_MODEL})")
    parser.add_argument("--port", type=int, default=19100,
                        help="embedded server HTTP port (gRPC +1, metrics +2)")
    parser.add_argument("--demo-cost", action="store_true",
                        help="keep the demo fleet's simulated accelerator time for the model "
                        "(default: none, so the model's sleep does not cap the throughput)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="MODEL.FIELD=VALUE",
                        help="override a served model's setting, as `tritonload serve --set` "
                        "(e.g. recommender.cost_per_item_us=0); repeatable")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write every run's numbers and the verdicts here")
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    args = parser.parse_args()
    if args.duration < 2 or args.rounds < 1 or args.users < 2 or args.in_flight < 1:
        parser.error("need --duration >= 2, --rounds >= 1, --users >= 2 (one per worker), "
                     "--in-flight >= 1")

    from tritonload.core.errors import UsageError
    from tritonload.server import EmbeddedTriton, Ports, demo_fleet
    from tritonload.server.fleet import overrides_from_strings

    overrides: dict[str, dict[str, object]] = {}
    if not args.demo_cost:  # no simulated accelerator time: the server's own CPU bounds it
        overrides[args.model] = {"cost_base_us": 0, "cost_per_item_us": 0}
    try:
        for model, changes in overrides_from_strings(args.overrides).items():
            overrides.setdefault(model, {}).update(changes)
        fleet = demo_fleet(overrides)
    except UsageError as exc:
        parser.error(str(exc))
    models = [m for m in fleet if m.name == args.model]
    if not models:
        parser.error(f"unknown model {args.model!r}; known: "
                     + ", ".join(m.name for m in demo_fleet()))
    workdir = Path(tempfile.mkdtemp(prefix="tl-dist-scaling-"))
    results: list[Result] = []
    began = time.monotonic()
    server_cm = EmbeddedTriton(models=models, ports=Ports(args.port, args.port + 1,
                                                          args.port + 2))
    try:
        server_cm.start()
        server = psutil.Process(server_cm.pid)
        print(f"server ready ({time.monotonic() - began:.0f}s): {args.model} on 127.0.0.1:"
              f"{args.port}-{args.port + 2}; work dir {workdir}", flush=True)
        for round_no in range(1, args.rounds + 1):
            order = list(CONFIGS) if round_no % 2 else list(reversed(CONFIGS))
            for label, processes in order:  # alternate, so drifts favour neither
                r = run_once(label, processes, round_no, args, server, workdir)
                results.append(r)
                print(f"round {round_no} {label:<11} {_fmt(r.rps, '.0f')} req/s  client "
                      f"{_fmt(r.client_cpu_us, '.1f')} µs/req  master "
                      f"{_fmt(r.master_cpu_us, '.2f')} µs/req  records {r.records}  "
                      f"lost {r.lost}", flush=True)
    finally:
        server_cm.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    results.sort(key=lambda r: (r.round, r.processes))
    summary = print_results(results, args)
    print(f"total {time.monotonic() - began:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"settings": {k: v for k, v in vars(args).items() if k != "json"},
             "runs": [{**asdict(r), "lost": r.lost, "consistent": r.consistent}
                      for r in results],
             "summary": summary}, indent=2, default=str) + "\n")
    return 0 if summary["master_ok"] and summary["loss_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
