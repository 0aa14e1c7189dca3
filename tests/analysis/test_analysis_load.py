"""Loading run directories and refusing bad input with one clear line (exit code 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tritonload.analysis.cli import main
from tritonload.analysis.load import load_run, load_runs

from tritonload.core.errors import TritonloadError, UsageError


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.cli", *argv], capture_output=True,
                          text=True, timeout=120)


def _assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tritonload: error: ")
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_load_attaches_run_columns_and_uses_categoricals(make_run, Model):
    run = make_run([Model("a", rate_rps=100), Model("b", rate_rps=50)], load_level=8,
                   load_kind="concurrency", chunk_rows=500)
    rs = load_run(run)
    rec = rs.records
    meta = json.loads((run / "run.json").read_text())
    assert len(rec) == meta["request_count"]
    assert len(list((run / "requests").glob("*.parquet"))) > 1
    for col in ("model", "protocol", "mode", "error_kind", "run_id", "load_kind"):
        assert str(rec[col].dtype) == "category", col
    assert set(rec["run_id"].astype(str)) == {meta["run_id"]}
    assert set(rec["load_kind"].astype(str)) == {"concurrency"}
    assert (rec["load_level"] == 8).all()
    assert "service_us" not in rec.columns  # only the needed columns are read
    assert set(rs.server_stats["model"].astype(str)) == {"a", "b"}
    assert rs.runs.loc[0, "warmup_s"] == 0.0


def test_two_runs_concatenate_with_unified_categories(make_run, Model):
    a = make_run([Model("a")], load_level=1)
    b = make_run([Model("b")], load_level=2)
    rs = load_runs([a, b])
    assert set(rs.records["model"].cat.categories) == {"a", "b"}
    assert rs.records.groupby("load_level", observed=True)["model"].first().astype(
        str).to_dict() == {1.0: "a", 2.0: "b"}


def test_missing_run_dir(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(UsageError) as exc:
        load_runs([missing])
    assert str(missing) in str(exc.value)
    assert "\n" not in str(exc.value)
    assert exc.value.exit_code == 2
    _assert_one_line_error(_cli("report", str(missing), "-o", str(tmp_path / "out")),
                           str(missing), "not found")


def _main_error(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("tritonload: error: ")
    return err[0]


def test_missing_run_json(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    line = _main_error(capsys, "report", str(tmp_path / "empty"), "-o", str(tmp_path / "o"))
    assert "no run.json" in line and str(tmp_path / "empty") in line


def test_unknown_format_version(make_run):
    run = make_run()
    meta = json.loads((run / "run.json").read_text())
    meta["format_version"] = 99
    (run / "run.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError, match="format_version 99"):
        load_run(run)


def test_corrupt_run_json(make_run):
    run = make_run()
    (run / "run.json").write_text("{not json")
    with pytest.raises(UsageError, match="corrupt run.json"):
        load_run(run)


def test_corrupt_records_file(make_run, tmp_path):
    run = make_run(chunk_rows=1000)
    part = sorted((run / "requests").glob("*.parquet"))[1]
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])  # a truncated chunk
    with pytest.raises(UsageError) as exc:
        load_run(run)
    assert str(part) in str(exc.value)
    _assert_one_line_error(_cli("report", str(run), "-o", str(tmp_path / "out")),
                           "corrupt parquet file", part.name)
    assert not (tmp_path / "out" / "report.json").exists()


def test_records_file_missing_a_column(make_run):
    import pyarrow.parquet as pq

    run = make_run()
    part = sorted((run / "requests").glob("*.parquet"))[0]
    pq.write_table(pq.read_table(part).drop_columns(["latency_us"]), part)
    with pytest.raises(UsageError, match="lacks column.*latency_us"):
        load_run(run)


def test_incompatible_targets_refused_unless_forced(make_run, tmp_path, capsys):
    a = make_run(target_url="grpc://host-a:8001")
    b = make_run(target_url="grpc://host-b:8001")
    with pytest.raises(UsageError, match="different targets.*pass --force"):
        load_runs([a, b])
    rs = load_runs([a, b], force=True)
    assert rs.warnings and "different targets" in rs.warnings[0]
    _assert_one_line_error(_cli("compare", str(a), str(b)), "not comparable", "--force")
    line = _main_error(capsys, "report", str(a), str(b), "-o", str(tmp_path / "o"))
    assert "not comparable" in line
    assert main(["compare", str(a), str(b), "--force"]) == 0
    captured = capsys.readouterr()
    assert "| model |" in captured.out and "different targets" in captured.err


def test_incompatible_model_config_refused(make_run, Model):
    a = make_run([Model("dense", max_batch_size=8)])
    b = make_run([Model("dense", max_batch_size=16)])
    with pytest.raises(UsageError, match="'dense' is served with a different config"):
        load_runs([a, b])
    # A model the runs do not share does not matter.
    c = make_run([Model("dense", max_batch_size=8), Model("other", max_batch_size=1)])
    assert len(load_runs([a, c]).runs) == 2


def test_embedded_servers_on_different_ports_are_one_target(make_run):
    a = make_run(target_url="grpc://127.0.0.1:40001", embedded=True)
    b = make_run(target_url="grpc://127.0.0.1:40002", embedded=True)
    assert load_runs([a, b]).warnings == []


def test_same_run_twice_is_refused(make_run, tmp_path):
    import shutil

    a = make_run()
    shutil.copytree(a, tmp_path / "copy")
    with pytest.raises(UsageError, match="given twice"):
        load_runs([a, tmp_path / "copy"])


def test_main_returns_exit_code_without_raising(tmp_path, capsys):
    code = main(["report", str(tmp_path / "missing"), "-o", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run directory not found" in err[0]


def test_bad_parameters_are_usage_errors(make_run, tmp_path):
    from tritonload.analysis.pipeline import analyze

    rs = load_run(make_run())
    for kwargs in ({"headroom": 1.0}, {"slo_p95_ms": 0}, {"slo_p95_ms": 5, "target_rps": -1}):
        with pytest.raises(TritonloadError):
            analyze(rs, n_boot=100, **kwargs)
