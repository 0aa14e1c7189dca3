"""tritonload vs perf_analyzer, side by side: a matrix of models × modes on one server.

Starts the embedded server (the matrix's models, loopback, ports 18700-18702 by default),
then for each cell runs tritonload (a headless Locust child on `locustfiles/bench.py`) and
perf_analyzer (``../shared/peers/perf_analyzer.sh``) one after the other against it. The
default matrix is three shapes of traffic at their own concurrency C:

* ``recommender`` (small tensors) at 16, ``image_classifier`` (600 KB in) at 8,
  ``wide_ranker`` (29 MB out) at 4;

each in three modes:

* ``grpc-sync``:  C sync gRPC users                  vs ``-i grpc --concurrency-range C``
* ``http-sync``:  C sync HTTP users                  vs ``-i http --concurrency-range C``
* ``grpc-async``: 2 async gRPC users × C/2 in flight vs ``-i grpc --async --concurrency-range C``

``--model M [--concurrency C]`` runs one row of the matrix instead.

Both tools are measured the same way, over a steady-state window that skips the first
``--warmup`` seconds of load: a sampler polls every 0.5 s the tool process's CPU time (user +
sys, all threads and children, from psutil), the server's ``success`` count for the model
(Triton's statistics API) and the server processes' CPU time. Throughput = Δsuccess ÷ Δt, the
same counter for both tools; client CPU per request = Δclient CPU ÷ Δsuccess. P95 is each
tool's own: tritonload's exact records completed inside the window, perf_analyzer's reported
p95 (its last stable measurement windows). "other" is the machine's busy CPU that is neither
client nor server (other people's processes): a noise indicator, in cores.

    python benchmarks/vs_perf_analyzer.py [--modes grpc-sync,http-sync,grpc-async]
        [--model M] [--concurrency C] [--window 10] [--warmup 3] [--only tritonload|perf_analyzer]
        [--shared-memory none|system|both] [--repeat N]

Shared-memory cells (``… shm``) give both tools the same flags: ``--shared-memory system``
and ``--output-shared-memory-size`` of the model's largest output (perf_analyzer always puts
outputs in shared memory when it uses it, so tritonload does too). ``--shared-memory system``
runs every cell so; ``both`` runs each cell on the wire and again in shared memory.

``--repeat N`` runs the whole matrix N times, one pass after the other (a slow drift in the
machine's load then spreads over every cell). The table gives each cell's medians, and its
ratios as the median and range of the repeats' paired TL/PA ratios: on these 2 shared cores
one run of a cell near 1.0x lands on either side of it (recommender http-sync read 1.04 in
one session's run and 0.94 in the next), so a single run cannot rank such a cell, and a
range that spans 1.0 says so.

Generations: ``--model text_generator --modes grpc-stream`` streams from the decoupled demo
model: C sync LLM users (`locustfiles/llm.py` ``LlmUser``, ``--prompts``) against
``--streaming --concurrency-range C`` with ``--input-data``, both sending the same prompt
(``--isl`` words) asking ``--osl`` tokens. rps is generations per second (the server's
success count); p95 is the whole generation's (tritonload's records; perf_analyzer 2.41 says
it times the first response of a decoupled model, but its figure is the whole stream's: 321
ms for 16 tokens of about 19 ms, measured); cpu is client CPU per generation.

Target (issue 3): tritonload throughput >= 0.9 x perf_analyzer's in every cell; issue 16's
goal is 1.0x, with client CPU per request at most perf_analyzer's.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from children import busy_cpu, stop_child, tree_cpu  # noqa: E402 (benchmarks/, the script's folder)

PERF_ANALYZER = Path(os.environ.get("PERF_ANALYZER",
                                    ROOT.parent / "shared" / "peers" / "perf_analyzer.sh"))
LOCUST = Path(sys.executable).with_name("locust")
MODEL = "recommender"
CONCURRENCY = 16
TARGET_RATIO = 0.9
#: The default matrix's rows: a model and the concurrency it is measured at.
MATRIX = (("recommender", 16), ("image_classifier", 8), ("wide_ranker", 4))
#: The concurrency of a model outside the matrix (``--model`` alone).
DEFAULT_CONCURRENCY = dict(MATRIX) | {"text_generator": 16}

# mode -> (locust user class, async?, perf_analyzer protocol, extra PA args)
MODES = {
    "grpc-sync": ("Grpc", False, "grpc", []),
    "http-sync": ("Http", False, "http", []),
    "grpc-async": ("Grpc", True, "grpc", ["--async"]),
    "grpc-stream": ("LlmUser", False, "grpc", ["--streaming"]),
}


@dataclass(frozen=True)
class Cell:
    """One comparison: a model, a concurrency and a mode."""

    model: str
    concurrency: int
    mode: str
    shared: bool = False  # both tools with their tensors in system shared memory

    @property
    def name(self) -> str:
        """E.g. ``wide_ranker@4 http-sync`` (``… shm`` for a shared-memory cell)."""
        return f"{self.model}@{self.concurrency} {self.mode}{' shm' if self.shared else ''}"

    def label(self) -> str:
        """A file name for one run of this cell, unique across repeats."""
        return f"{self.name.replace('@', '-').replace(' ', '-')}-{time.time_ns()}"

    def locust_users(self) -> tuple[int, list[str]]:
        """tritonload's users and mode flags for this concurrency (async: 2 users)."""
        if MODES[self.mode][1]:
            users = 2 if self.concurrency >= 2 else 1
            return users, ["--mode", "async", "--max-in-flight",
                           str(max(1, self.concurrency // users))]
        return self.concurrency, ["--mode", "sync"]
#: Modes that stream generations (a decoupled model): the prompt file goes to both tools.
STREAM_MODES = {"grpc-stream"}


def prompt_files(args: argparse.Namespace, workdir: Path) -> tuple[Path, Path]:
    """The same prompt for both tools: tritonload's JSONL and perf_analyzer's input data."""
    prompt = " ".join(f"w{i}" for i in range(args.isl))
    jsonl, pa_json = workdir / "prompts.jsonl", workdir / "pa-prompts.json"
    jsonl.write_text(json.dumps({"text": prompt, "max_tokens": args.osl}) + "\n")
    pa_json.write_text(json.dumps({"data": [{"text_input": [prompt],
                                              "max_tokens": [args.osl]}]}))
    return jsonl, pa_json


@dataclass
class Sample:
    """One poll: wall clock (ns), client CPU (s), server success count, server CPU (s), busy."""

    t_ns: int
    client_cpu: float
    success: int
    server_cpu: float
    busy_cpu: float


@dataclass
class Measure:
    """One tool's steady-state numbers for one mode."""

    tool: str
    rps: float = 0.0
    p95_ms: float = float("nan")
    cpu_us: float = float("nan")
    server_cpu_us: float = float("nan")
    other_cores: float = float("nan")
    window_s: float = 0.0
    own_rps: float = float("nan")  # the tool's own count (records / perf_analyzer report)
    errors: int = 0
    note: str = ""
    samples: list[Sample] = field(default_factory=list, repr=False)


def _server_success(http_port: int, model: str = MODEL) -> int:
    url = f"http://127.0.0.1:{http_port}/v2/models/{model}/stats"
    with urllib.request.urlopen(url, timeout=5) as response:
        stats = json.loads(response.read())["model_stats"][0]
    return int(stats["inference_stats"]["success"]["count"])


class Sampler(threading.Thread):
    """Polls client CPU, server success count and server CPU every ``period`` s."""

    def __init__(self, client_pid: int, server: psutil.Process, http_port: int,
                 period: float = 0.5, model: str = MODEL) -> None:
        super().__init__(daemon=True)
        self.client = psutil.Process(client_pid)
        self.server, self.http_port, self.period = server, http_port, period
        self.model = model
        self.samples: list[Sample] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                client_cpu = tree_cpu(self.client)
                if not self.client.is_running() or self.client.status() == psutil.STATUS_ZOMBIE:
                    break
                self.samples.append(Sample(time.time_ns(), client_cpu,
                                           _server_success(self.http_port, self.model),
                                           tree_cpu(self.server), busy_cpu()))
            except (psutil.Error, OSError):
                break
            self._halt.wait(self.period)

    def stop(self) -> list[Sample]:
        self._halt.set()
        self.join(5)
        return self.samples


def _window(measure: Measure, samples: list[Sample], start_ns: int, end_ns: int) -> None:
    """Fill rates from the first and last samples inside [start_ns, end_ns]."""
    inside = [s for s in samples if start_ns <= s.t_ns <= end_ns]
    if len(inside) < 2:
        measure.note = f"only {len(inside)} samples in the window"
        return
    a, b = inside[0], inside[-1]
    dt = (b.t_ns - a.t_ns) / 1e9
    done = b.success - a.success
    measure.window_s = dt
    measure.rps = done / dt
    if done:
        measure.cpu_us = (b.client_cpu - a.client_cpu) / done * 1e6
        measure.server_cpu_us = (b.server_cpu - a.server_cpu) / done * 1e6
    measure.other_cores = ((b.busy_cpu - a.busy_cpu) - (b.client_cpu - a.client_cpu)
                           - (b.server_cpu - a.server_cpu)) / dt
    measure.samples = samples


def run_tritonload(cell: Cell, args: argparse.Namespace, server: psutil.Process,
                   workdir: Path) -> Measure:
    """One headless Locust run; the window starts ``warmup`` s after its test_start."""
    user_class = MODES[cell.mode][0]
    users, extra = cell.locust_users()
    label = cell.label()
    run_dir = workdir / f"tritonload-{label}"
    duration = int(args.warmup + args.window + 2)
    locustfile = "bench.py"
    if cell.mode in STREAM_MODES:
        locustfile = "llm.py"
        extra = [*extra, "--prompts", str(prompt_files(args, workdir)[0])]
    cmd = [str(LOCUST), "-f", str(ROOT / "locustfiles" / locustfile), user_class,
           "--mix", f"{cell.model}:1", *shared_memory_args(cell, args),
           "--headless", "-u", str(users), "-r", "1000", "-t", f"{duration}s",
           "--host", f"127.0.0.1:{args.http_port}", "--run-dir", str(run_dir),
           "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "2", *extra]
    return measure_locust("tritonload", cmd, run_dir, workdir / f"tritonload-{label}.log",
                          server, args.http_port, args.warmup, args.window, duration,
                          model=cell.model)


def output_bytes(model: str) -> int:
    """The largest output of a demo model at batch 1, in bytes: its output region's size."""
    from tritonclient.utils import triton_to_np_dtype

    from tritonload.server import demo_fleet

    spec = next(m for m in demo_fleet() if m.name == model)
    return max(math.prod(t.dims) * np.dtype(triton_to_np_dtype(t.datatype)).itemsize
               for t in spec.outputs)


def shared_memory_args(cell: Cell, args: argparse.Namespace) -> list[str]:
    """A shared cell's flags, the same in both tools: inputs and outputs in system memory.

    perf_analyzer puts every output in a region of ``--output-shared-memory-size`` bytes
    whenever ``--shared-memory`` is on (100 KB by default, too small for wide_ranker's 29 MB),
    so both tools get the model's largest output size, unless the flag gives one.
    """
    if not cell.shared or cell.mode in STREAM_MODES:
        return []
    size = args.output_shared_memory_size or output_bytes(cell.model)
    return ["--shared-memory", "system", "--output-shared-memory-size", str(size)]


def measure_locust(label: str, cmd: list[str], run_dir: Path, log_path: Path,
                   server: psutil.Process, http_port: int, warmup: float, window: float,
                   duration: float, model: str = MODEL) -> Measure:
    """Run a headless Locust command and measure it over [warmup, warmup + window].

    The window starts ``warmup`` s after the run's test_start (when run.json appears);
    throughput and CPU come from the samplers, the P95 and errors from the run's records.
    """
    import pandas as pd

    measure = Measure(label)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        sampler = Sampler(proc.pid, server, http_port, model=model)
        sampler.start()
        deadline = time.monotonic() + 60
        while not (run_dir / "run.json").exists():  # written at test_start
            if proc.poll() is not None or time.monotonic() > deadline:
                sampler.stop()
                stop_child(proc, 0, interrupt_wait_s=10)
                measure.note = f"locust did not start (see {log_path})"
                return measure
            time.sleep(0.05)
        start_ns = time.time_ns() + int(warmup * 1e9)
        end_ns = start_ns + int(window * 1e9)
        stop_child(proc, duration + 30, interrupt_wait_s=10)
        samples = sampler.stop()
    _window(measure, samples, start_ns, end_ns)
    try:
        records = pd.read_parquet(run_dir / "requests",
                                  columns=["start_ns", "service_us", "latency_us", "ok"])
    except (OSError, ValueError) as exc:
        measure.note = f"no records: {exc}"
        return measure
    done_ns = records["start_ns"] + records["service_us"] * 1000
    lo = max(start_ns, measure.samples[0].t_ns if measure.samples else start_ns)
    inside = records[(done_ns >= lo) & (done_ns <= end_ns)]
    if len(inside):
        measure.p95_ms = inside.loc[inside["ok"], "latency_us"].quantile(0.95) / 1000
        measure.own_rps = len(inside) / ((end_ns - lo) / 1e9)
        measure.errors = int((~inside["ok"]).sum())
    return measure


def run_perf_analyzer(cell: Cell, args: argparse.Namespace, server: psutil.Process,
                      workdir: Path) -> Measure:
    """One perf_analyzer run at the cell's concurrency; window = [warmup, warmup + window]."""
    _, _, protocol, extra = MODES[cell.mode]
    if cell.mode in STREAM_MODES:
        extra = [*extra, "--input-data", str(prompt_files(args, workdir)[1])]
    port = args.http_port if protocol == "http" else args.http_port + 1
    label = cell.label()
    out_csv = workdir / f"pa-{label}.csv"
    # Exactly 3 windows (a 100% stability band always passes): a bounded, predictable run
    # that covers our [warmup, warmup + window] sampling window.
    interval_ms = int(max(3.0, (args.warmup + args.window) / 3) * 1000)
    cmd = [str(PERF_ANALYZER), "-m", cell.model, "-u", f"127.0.0.1:{port}", "-i", protocol,
           *shared_memory_args(cell, args),
           "--concurrency-range", str(cell.concurrency), "--measurement-interval",
           str(interval_ms), "--stability-percentage", "100", "--max-trials", "3",
           "-f", str(out_csv), *extra]
    log = open(workdir / f"pa-{label}.log", "w")
    measure = Measure("perf_analyzer")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    sampler = Sampler(proc.pid, server, args.http_port, model=cell.model)
    sampler.start()
    start_ns = time.time_ns() + int(args.warmup * 1e9)
    end_ns = start_ns + int(args.window * 1e9)
    stop_child(proc, 90, interrupt_wait_s=10)
    samples = sampler.stop()
    log.close()
    # perf_analyzer may finish before the window ends: then the window ends at its last sample.
    _window(measure, samples, start_ns, end_ns)
    if measure.window_s < 0.6 * args.window:
        measure.note = (measure.note + f" short window {measure.window_s:.1f}s").strip()
    try:
        with open(out_csv) as handle:
            row = next(csv.DictReader(handle))
        measure.p95_ms = float(row["p95 latency"]) / 1000
        measure.own_rps = float(row["Inferences/Second"])
    except (OSError, StopIteration, KeyError, ValueError):
        measure.note = (measure.note + f" no perf_analyzer result (see {log.name})").strip()
    return measure


def _fmt(value: float, spec: str) -> str:
    return "-" if value != value else format(value, spec)  # NaN -> "-"


def _median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if a and b and a == a and b == b else float("nan")


@dataclass
class Row:
    """One cell over its repeats: medians, and the paired TL/PA ratios of each repeat."""

    name: str
    runs: list[dict[str, Measure]]

    def values(self, tool: str, attribute: str) -> list[float]:
        return [getattr(run.get(tool, Measure(tool)), attribute) for run in self.runs]

    def median(self, tool: str, attribute: str) -> float:
        return _median(self.values(tool, attribute))

    def ratios(self, attribute: str) -> list[float]:
        """TL/PA for each repeat: the two tools ran back to back, so each pair shares a load."""
        pairs = zip(self.values("tritonload", attribute),
                    self.values("perf_analyzer", attribute), strict=True)
        return [_ratio(tl, pa) for tl, pa in pairs]

    def spread(self, attribute: str) -> str:
        """The median ratio, and its repeats' range when there are several: ``1.02 (0.97-1.05)``."""
        ratios = [r for r in self.ratios(attribute) if r == r]
        if not ratios:
            return "-"
        text = f"{statistics.median(ratios):.2f}"
        return text + (f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else "")


def print_table(results: dict[str, list[dict[str, Measure]]]) -> bool:
    """The final table (a row per cell); returns whether every cell met the target ratio.

    With ``--repeat``, a cell's figures are medians over its repeats, and its ratios show the
    range of the repeats' paired ratios: a range that spans 1.0 is a cell the machine's noise
    cannot rank.
    """
    rows = [Row(name, runs) for name, runs in results.items()]
    repeats = max((len(r.runs) for r in rows), default=1)
    rw = 17 if repeats > 1 else 5
    width = max([len(r.name) for r in rows] + [4])
    header = (f"{'cell':<{width}} {'TL rps':>7} {'PA rps':>7} {'ratio':>{rw}} {'TL p95':>7} "
              f"{'PA p95':>7} {'TL cpu':>7} {'PA cpu':>7} {'cpu ratio':>{rw}} {'srv cpu':>11} "
              f"{'other':>9}")
    print()
    print("cell = model@concurrency mode. rps = server success/s over the window; p95 in ms;")
    print("cpu = client CPU µs per request; srv cpu = server CPU µs/request (TL/PA);")
    print("other = CPU cores busy with neither client nor server (TL/PA, noise).")
    if repeats > 1:
        print(f"Medians over {repeats} repeats; ratios: median (range of the repeats' "
              "paired ratios).")
    print(header)
    print("-" * len(header))
    all_ok, goal_met, unranked = True, 0, []
    for row in rows:
        tl = {a: row.median("tritonload", a) for a in ("rps", "p95_ms", "cpu_us",
                                                      "server_cpu_us", "other_cores")}
        pa = {a: row.median("perf_analyzer", a) for a in tl}
        ratios = [r for r in row.ratios("rps") if r == r]
        ratio = _median(ratios)
        cpu_ratio = _median(row.ratios("cpu_us"))
        all_ok &= ratio == ratio and ratio >= TARGET_RATIO
        goal_met += ratio >= 1.0 and cpu_ratio <= 1.0
        if len(ratios) > 1 and min(ratios) < 1.0 <= max(ratios):
            unranked.append(row.name)
        print(f"{row.name:<{width}} {tl['rps']:>7.0f} {pa['rps']:>7.0f} "
              f"{row.spread('rps'):>{rw}} "
              f"{_fmt(tl['p95_ms'], '7.2f'):>7} {_fmt(pa['p95_ms'], '7.2f'):>7} "
              f"{_fmt(tl['cpu_us'], '7.0f'):>7} {_fmt(pa['cpu_us'], '7.0f'):>7} "
              f"{row.spread('cpu_us'):>{rw}} "
              f"{_fmt(tl['server_cpu_us'], '.0f'):>5}/{_fmt(pa['server_cpu_us'], '.0f'):<5} "
              f"{_fmt(tl['other_cores'], '.2f'):>4}/{_fmt(pa['other_cores'], '.2f'):<4}")
    for row in rows:
        for index, run in enumerate(row.runs, 1):
            for m in run.values():
                extra = f"; {m.note}" if m.note else ""
                rep = f" #{index}" if repeats > 1 else ""
                print(f"  {row.name}{rep} {m.tool}: {m.rps:.0f} rps, own count "
                      f"{_fmt(m.own_rps, '.0f')} rps, window {m.window_s:.1f}s, "
                      f"errors {m.errors}{extra}")
    print(f"target ratio >= {TARGET_RATIO}: {'met' if all_ok else 'NOT met'} in every cell")
    print(f"issue 16's goal (ratio >= 1.0 and cpu ratio <= 1.0): {goal_met} of {len(rows)} "
          "cells")
    if unranked:
        print(f"repeats on both sides of 1.0x (noise): {', '.join(unranked)}")
    return all_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(m for m in MODES if m not in STREAM_MODES))
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds dropped at start")
    parser.add_argument("--only", choices=("tritonload", "perf_analyzer"), default=None)
    parser.add_argument("--http-port", type=int, default=18700,
                        help="embedded server HTTP port (gRPC +1, metrics +2)")
    parser.add_argument("--server-pid", type=int, default=None,
                        help="reuse a tritonserver already serving recommender on "
                        "127.0.0.1:HTTP_PORT (its PID, for CPU accounting) instead of starting one")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--model", default=None,
                        help="one row: this demo model (image_classifier sends 600 KB, "
                        "wide_ranker answers 29 MB); default the matrix: "
                        + ", ".join(f"{m}@{c}" for m, c in MATRIX))
    parser.add_argument("--concurrency", type=int, default=None,
                        help="with --model: its concurrency (default its matrix row's, or 16)")
    parser.add_argument("--shared-memory", choices=("none", "system", "both"), default="none",
                        help="system: every cell with both tools' tensors in system shared "
                        "memory; both: each cell on the wire and again in shared memory")
    parser.add_argument("--output-shared-memory-size", type=int, default=None, metavar="BYTES",
                        help="with --shared-memory: the output region's size in both tools "
                        "(default each model's largest output)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the whole matrix this many times, interleaved; the table "
                        "gives medians and the range of each cell's paired ratios")
    parser.add_argument("--isl", type=int, default=128,
                        help="grpc-stream: prompt words (default 128)")
    parser.add_argument("--osl", type=int, default=16,
                        help="grpc-stream: tokens asked for (default 16)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode {unknown[0]!r}; known: {', '.join(MODES)}")
    if args.only != "tritonload" and not PERF_ANALYZER.exists():
        parser.error(f"perf_analyzer wrapper not found at {PERF_ANALYZER}")
    if args.concurrency is not None and (args.model is None or args.concurrency < 1):
        parser.error("--concurrency needs --model, and must be >= 1")
    rows = ([(args.model, args.concurrency or DEFAULT_CONCURRENCY.get(args.model, CONCURRENCY))]
            if args.model else list(MATRIX))
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    placements = {"none": [False], "system": [True], "both": [False, True]}[args.shared_memory]
    cells = [Cell(model, concurrency, mode, shared) for model, concurrency in rows
             for mode in modes for shared in placements
             if not (shared and mode in STREAM_MODES)]

    from tritonload.server import EmbeddedTriton, Ports, demo_fleet

    workdir = Path(tempfile.mkdtemp(prefix="tl-vs-pa-"))
    results: dict[str, list[dict[str, Measure]]] = {cell.name: [] for cell in cells}
    began = time.monotonic()
    server_cm = None
    try:
        if args.server_pid:
            server = psutil.Process(args.server_pid)
        else:
            models = [m for m in demo_fleet() if m.name in {model for model, _ in rows}]
            port = args.http_port
            server_cm = EmbeddedTriton(models=models, ports=Ports(port, port + 1, port + 2))
            server_cm.start()
            server = psutil.Process(server_cm.pid)
        print(f"server ready ({time.monotonic() - began:.0f}s); work dir {workdir}", flush=True)
        turn = 0
        for repeat in range(1, args.repeat + 1):  # whole passes: a drift spreads over all cells
            for cell in cells:
                run_pair: dict[str, Measure] = {}
                results[cell.name].append(run_pair)
                runners = [("tritonload", run_tritonload), ("perf_analyzer", run_perf_analyzer)]
                turn += 1
                if turn % 2 == 0:  # alternate the order, so slow drifts in the machine's
                    runners.reverse()  # load don't always favour the same tool
                for tool, run in runners:
                    if args.only and tool != args.only:
                        continue
                    m = run(cell, args, server, workdir)
                    run_pair[tool] = m
                    rep = f" #{repeat}" if args.repeat > 1 else ""
                    print(f"{cell.name + rep:<32} {tool:<14} {m.rps:7.0f} rps  p95 "
                          f"{_fmt(m.p95_ms, '.2f')} ms  "
                          f"client {_fmt(m.cpu_us, '.0f')} µs/req  server "
                          f"{_fmt(m.server_cpu_us, '.0f')} µs/req  other "
                          f"{_fmt(m.other_cores, '.2f')} cores {m.note}", flush=True)
    finally:
        if server_cm is not None:
            server_cm.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    ok = print_table(results)
    print(f"total {time.monotonic() - began:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
