"""`--processes`, `--master` and `--worker`: flags that do not go together are one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonload.cli.headless import LocustRun, LocustWorker, Processes
from tritonload.cli.main import main
from tritonload.core.config import Target


@pytest.mark.parametrize(("argv", "message"), [
    (["--master"], "--master needs --expect-workers N"),
    (["--expect-workers", "2"], "--expect-workers is for --master"),
    (["--master", "--expect-workers", "2", "--processes", "2"],
     "--processes and --master do not mix: a master forks no workers of its own"),
    (["--worker"], "--worker needs --master-host HOST"),
    (["--master-host", "10.0.0.1"], "--master-host is for --worker"),
    (["--worker", "--master", "--expect-workers", "1", "--master-host", "h"],
     "--master and --worker do not mix"),
    (["--worker", "--master-host", "h", "--url", "t:8000", "--slo", "p95=5ms"],
     "a --worker takes its target, run directory and SLOs from the master: drop --url, --slo"),
    (["--processes", "0"],
     "tritonload run: argument --processes: must be >= 1, got 0 (see tritonload run --help)"),
    (["--master", "--expect-workers", "2", "--master-port", "70000"],
     "--master-port 70000 is not in 1..65535"),
])
def test_bad_combinations_are_one_line_and_exit_2(argv, message, capsys):
    try:
        code = main(["run", "mixed_models", *argv])
    except SystemExit as exc:  # argparse's own refusals exit from inside the parser
        code = exc.code
    assert code == 2
    assert capsys.readouterr().err.strip() == f"tritonload: error: {message}"


def test_the_master_and_worker_command_lines():
    target = Target("127.0.0.1", 8000, 8001)
    master = LocustRun(__file__, target, "run", 8, 30,
                       processes=Processes(expect_workers=3, port=6000, wait_s=90)).command()
    flags = master[master.index("--master"):master.index("--master") + 7]
    assert flags == ["--master", "--expect-workers", "3", "--expect-workers-max-wait", "90",
                     "--master-bind-port", "6000"]
    forked = LocustRun(__file__, target, "run", 8, 30, processes=Processes(local=2)).command()
    assert forked[forked.index("--processes") + 1] == "2" and "--master" not in forked
    single = LocustRun(__file__, target, "run", 8, 30).command()
    assert "--processes" not in single and "--master" not in single
    worker = LocustWorker(__file__, "10.1.2.3", 6000, processes=4).command()
    assert {"--worker", "--master-host", "10.1.2.3", "--master-port", "6000"} <= set(worker)
    assert worker[worker.index("--processes") + 1] == "4"
    assert "--host" not in worker and "--run-dir" not in worker  # the master sends both


def test_bench_and_capacity_send_each_probe_from_the_processes_asked_for():
    from tritonload.cli.capacity import Search
    from tritonload.cli.commands.capacity import limits_from_args, plan_from_args
    from tritonload.cli.main import build_parser

    for command in ("bench", "capacity"):
        args = build_parser().parse_args([command, "--processes", "3"])
        plan = plan_from_args(args)
        assert plan.processes == Processes(local=3)
    search = Search("recommender", "grpc", limits_from_args(args), Path("out"))
    job = search.job(Target("127.0.0.1", 8000, 8001), 900.0, plan)
    assert job.users == 3  # one user per worker: the rate is split over the users
    assert job.command()[job.command().index("--processes") + 1] == "3"
