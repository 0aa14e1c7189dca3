"""``--validate``: answers checked against ``validation_data``, as perf_analyzer checks them.

The expected outputs are what the real server answered for the file's entries (read once
with tritonclient), so the exact comparison must pass; the same file with one value changed
must fail every request with kind ``output_mismatch``, over both protocols, while the run
goes on and every record is kept. perf_analyzer 2.41 gives the same verdicts on the same
files (it stops at the first mismatch, exit 99; we count them).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.conftest import free_ports
from tests.locust_runs import error_lines, records, run_locust
from tritonload.core.config import Target
from tritonload.core.errors import OutputMismatch, UsageError, classify
from tritonload.core.rundir import read_run_json
from tritonload.server import EmbeddedTriton, Ports, demo_fleet
from tritonload.triton.admin import TritonAdmin
from tritonload.triton.expected import check_outputs
from tritonload.triton.payloads import ModelInfo, load_payload_file

PERF_ANALYZER = Path(os.environ.get("PERF_ANALYZER", "/work/shared/peers/perf_analyzer.sh"))
ENTRIES = [(np.linspace(-1, 1, 64, dtype="<f4") * k, np.arange(64, dtype="<f4") / (k + 1))
           for k in range(3)]


# -- the comparison, pure ------------------------------------------------------------------

def test_exact_outputs_pass_and_any_difference_is_named():
    want = {"score": np.array([[1.5], [2.5]], dtype=np.float32)}
    check_outputs("m", want, {"score": want["score"].copy()}.get)
    off = want["score"].copy()
    off[1, 0] = np.nextafter(np.float32(2.5), np.float32(3))  # one ulp: still a mismatch
    with pytest.raises(OutputMismatch, match=r"m: output 'score' differs from validation_data "
                                             r"at element 1: got .*2\.5000002.*, expected .*2\.5"):
        check_outputs("m", want, {"score": off}.get)
    with pytest.raises(OutputMismatch, match="has shape \\[2\\], validation_data \\[2, 1\\]"):
        check_outputs("m", want, {"score": off.reshape(-1)}.get)
    with pytest.raises(OutputMismatch, match="is float64, validation_data float32"):
        check_outputs("m", want, {"score": want["score"].astype(np.float64)}.get)
    with pytest.raises(OutputMismatch, match="the answer has no output 'score'"):
        check_outputs("m", want, {}.get)
    strings = {"label": np.array([b"cat", b"dog"], dtype=object)}
    check_outputs("m", strings, {"label": np.array([b"cat", b"dog"], dtype=object)}.get)
    with pytest.raises(OutputMismatch, match="at element 1"):
        check_outputs("m", strings, {"label": np.array([b"cat", b"cow"], dtype=object)}.get)
    assert classify(OutputMismatch("x")) == "output_mismatch"


# -- against the real server ---------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """recommender, its info, and what it answers for each of ENTRIES."""
    log = tmp_path_factory.mktemp("triton-validate") / "tritonserver.log"
    server = EmbeddedTriton([m for m in demo_fleet() if m.name == "recommender"],
                            Ports(*free_ports(start=19700)), log_file=log)
    server.start()
    try:
        target = Target("127.0.0.1", server.ports.http, server.ports.grpc)
        with TritonAdmin(target) as admin:
            info = ModelInfo.from_served(admin.metadata("recommender"),
                                         admin.config("recommender"))
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.ports.grpc}")
        scores = []
        for user, item in ENTRIES:
            inputs = [grpcclient.InferInput("user_features", [1, 64], "FP32"),
                      grpcclient.InferInput("item_features", [1, 64], "FP32")]
            inputs[0].set_data_from_numpy(user[None])
            inputs[1].set_data_from_numpy(item[None])
            scores.append(client.infer("recommender", inputs).as_numpy("score")[0])
        client.close()
        yield server, info, scores
    finally:
        server.stop()


def _file(tmp_path: Path, scores, name: str = "expected", nudge: int | None = None) -> Path:
    """ENTRIES with their validation_data; ``nudge`` adds 1.0 to that entry's score."""
    data = [{"user_features": u.tolist(), "item_features": i.tolist()} for u, i in ENTRIES]
    validation = []
    for k, score in enumerate(scores):
        value = score + np.float32(1.0) if k == nudge else score
        validation.append({"score": {"content": value.astype(float).tolist(), "shape": [1]}})
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"data": data, "validation_data": validation}))
    return path


def test_validation_data_reads_as_tensors_and_unknown_outputs_are_ignored(
        served, tmp_path, caplog):
    _, info, scores = served
    payload = load_payload_file(_file(tmp_path, scores), info)
    assert len(payload.validation) == len(ENTRIES)
    assert payload.validation[0]["score"].shape == (1, 1)  # the batch dim, as the answer has
    np.testing.assert_array_equal(payload.validation[2]["score"][0], scores[2])
    document = json.loads(_file(tmp_path, scores).read_text())
    document["validation_data"][0]["no_such_output"] = [1.0]
    (tmp_path / "extra.json").write_text(json.dumps(document))
    with caplog.at_level(logging.WARNING, logger="tritonload.triton.payloads"):
        load_payload_file(tmp_path / "extra.json", info)
    assert "has no output 'no_such_output'; not checked" in caplog.text
    document["validation_data"][1] = {"score": [1]}  # a JSON integer for FP32, as for inputs
    (tmp_path / "bad.json").write_text(json.dumps(document))
    with pytest.raises(UsageError, match=r"bad.json: validation_data entry 1, output 'score': "
                                         r"value 0 is 1; FP32 needs numbers"):
        load_payload_file(tmp_path / "bad.json", info)


def _run(server, tmp_path, payload: Path, *args):
    return run_locust("locustfiles/mixed_models.py", "-u", "2", "-r", "2", "-t", "3s",
                      "--host", f"127.0.0.1:{server.ports.http}", "--mix", "recommender:1",
                      "--payload", f"recommender={payload}", "--run-dir",
                      str(tmp_path / "run"), *args, cwd=tmp_path)


def test_right_outputs_pass_over_both_protocols(served, tmp_path):
    server, _, scores = served
    proc = _run(server, tmp_path, _file(tmp_path, scores), "--validate")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "checking every answer of recommender against validation_data" in proc.stderr
    frame = records(tmp_path / "run")
    assert set(frame["protocol"]) == {"grpc", "http"} and len(frame) > 50
    assert (frame["error_kind"] == "").all()
    assert read_run_json(tmp_path / "run")["validated"] == ["recommender"]


def test_a_mismatch_is_its_own_kind_and_the_run_goes_on(served, tmp_path):
    server, _, scores = served
    proc = _run(server, tmp_path, _file(tmp_path, scores, nudge=1), "--validate")
    assert proc.returncode == 1, proc.stderr[-2000:]  # Locust's exit code for failed requests
    frame = records(tmp_path / "run")
    assert set(frame["protocol"]) == {"grpc", "http"} and len(frame) > 50
    failed = frame[frame["error_kind"] != ""]
    assert set(failed["error_kind"]) == {"output_mismatch"}
    # One entry in three is off: about a third of the requests fail (entries go round-robin).
    assert 0.2 < len(failed) / len(frame) < 0.45, len(failed) / len(frame)
    got, expected = scores[1][0], scores[1][0] + np.float32(1.0)
    assert (f"output_mismatch: recommender: output 'score' differs from validation_data at "
            f"element 0: got {got!r}, expected {expected!r}") in proc.stderr  # Locust's report
    assert read_run_json(tmp_path / "run")["error_counts"]["output_mismatch"] == len(failed)


def test_without_validate_the_file_is_only_sent(served, tmp_path):
    server, _, scores = served
    proc = _run(server, tmp_path, _file(tmp_path, scores, nudge=0))
    assert proc.returncode == 0, proc.stderr[-2000:]
    frame = records(tmp_path / "run")
    assert len(frame) > 50 and (frame["error_kind"] == "").all()
    assert read_run_json(tmp_path / "run")["validated"] == []


def test_validate_without_validation_data_is_one_line(served, tmp_path):
    server, _, _ = served
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"data": [{"user_features": ENTRIES[0][0].tolist(),
                                           "item_features": ENTRIES[0][1].tolist()}]}))
    proc = _run(server, tmp_path, plain, "--validate")
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert "--validate needs a --payload file with \"validation_data\"" in line
    assert "Traceback" not in proc.stderr


def test_perf_analyzer_gives_the_same_verdicts(served, tmp_path):
    """The files above, to perf_analyzer 2.41: the exact one runs, the nudged one stops."""
    server, _, scores = served
    try:
        subprocess.run([str(PERF_ANALYZER), "--help"], capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"perf_analyzer cannot be installed or run: {exc}")
    verdicts = {}
    for name, nudge in (("exact", None), ("nudged", 1)):
        proc = subprocess.run(
            [str(PERF_ANALYZER), "-m", "recommender", "-u", f"127.0.0.1:{server.ports.grpc}",
             "-i", "grpc", "--input-data", str(_file(tmp_path, scores, name, nudge)),
             "-p", "100", "--concurrency-range", "1", "-s", "1000", "-r", "3"],
            capture_output=True, text=True, timeout=60)
        verdicts[name] = (proc.returncode, "Output doesn't match expected output"
                          in proc.stdout + proc.stderr)
    assert verdicts == {"exact": (0, False), "nudged": (99, True)}, verdicts
