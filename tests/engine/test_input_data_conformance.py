"""perf_analyzer ``--input-data`` conformance: the same files, fed to perf_analyzer 2.41 and to us.

Why against perf_analyzer itself: a payload file is meant to drive both tools, and its
documentation is looser than its parser (it refuses nested lists and JSON integers for a
float input, ignores keys that are not inputs, and reads ``{"b64", "shape"}``). Each case is
one file (or directory), run by perf_analyzer against a real Triton, then loaded by
`load_payload_file` against the same served metadata:

* the table records perf_analyzer's verdict, so a case fails if perf_analyzer stops agreeing
  with it (the table was written from such runs, not from its documentation);
* where perf_analyzer accepts, we accept with the very tensors the file was built from;
* where it refuses, we refuse with one line naming the entry and the input.

The demo fleet serves FP32 and INT64 only, so BYTES and INT32 are covered by the unit tests
(tests/engine/test_payloads.py), against perf_analyzer's parser as read, not as run.
perf_analyzer is installed by /work/shared/peers/perf_analyzer.sh (a wheel from PyPI on first
use); without it the module is skipped.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import free_ports
from tritonload.core.config import Target
from tritonload.core.errors import UsageError
from tritonload.server import EmbeddedTriton, Ports, demo_fleet
from tritonload.triton.admin import TritonAdmin
from tritonload.triton.payloads import ModelInfo, load_payload_file

pytestmark = pytest.mark.integration

PERF_ANALYZER = Path(os.environ.get("PERF_ANALYZER", "/work/shared/peers/perf_analyzer.sh"))
MODELS = ("recommender", "text_classifier")
# Quick: three 100 ms windows at concurrency 1 that always count as stable (~0.4 s a run).
QUICK = ("-p", "100", "--concurrency-range", "1", "-s", "1000", "-r", "3")


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(array.tobytes()).decode()


USER = np.linspace(-1, 1, 64, dtype="<f4")
ITEM = np.arange(64, dtype="<f4") / 8
IDS = np.arange(100, 116, dtype="<i8")
MASK = np.ones(16, dtype="<i8")


def _rec(user=None, item=None):
    return {"user_features": USER.tolist() if user is None else user,
            "item_features": ITEM.tolist() if item is None else item}


def _text(n: int, b64: bool = False):
    ids, mask = np.arange(n, dtype="<i8") + 7, np.ones(n, dtype="<i8")
    value = {"b64": _b64(ids), "shape": [n]} if b64 else {"content": ids.tolist(), "shape": [n]}
    return {"input_ids": value, "attention_mask": {"content": mask.tolist(), "shape": [n]}}


def _text_arrays(n: int):
    return {"input_ids": np.arange(n, dtype="<i8") + 7, "attention_mask": np.ones(n, "<i8")}


REC = {"user_features": USER, "item_features": ITEM}
TEXT_B64 = {"input_ids": IDS, "attention_mask": MASK}

# id, model, the file's document ("DIR" for a directory of raw files), then either the entries
# it must read as (perf_analyzer accepts) or the start of our one-line refusal.
ACCEPTED = [
    ("flat-lists", "recommender", {"data": [_rec(), _rec()]}, [REC, REC]),
    ("content-with-and-without-shape", "recommender",
     {"data": [_rec(user={"content": USER.tolist(), "shape": [64]},
                    item={"content": ITEM.tolist()})]}, [REC]),
    ("b64-without-shape-fixed-dims", "recommender",
     {"data": [_rec(user={"b64": _b64(USER)}, item={"content": {"b64": _b64(ITEM)}})]}, [REC]),
    ("b64-with-shape-variable-dims", "text_classifier",  # issue 13's bug
     {"data": [{"input_ids": {"b64": _b64(IDS), "shape": [16]},
                "attention_mask": {"b64": _b64(MASK), "shape": [16]}}]}, [TEXT_B64]),
    ("content-b64-with-shape", "text_classifier",
     {"data": [{"input_ids": {"content": {"b64": _b64(IDS)}, "shape": [16]},
                "attention_mask": {"content": MASK.tolist(), "shape": [16]}}]}, [TEXT_B64]),
    ("streams-of-varying-shapes", "text_classifier",
     {"data": [[_text(4), _text(8, b64=True)], [_text(2)]]},
     [_text_arrays(4), _text_arrays(8), _text_arrays(2)]),
    ("keys-that-are-not-inputs-ignored", "recommender",
     {"data": [{**_rec(), "model": "recommender", "parameters": {"p": 1}, "timestamp": 5,
                "user_featurez": [1.0]}]}, [REC]),
    ("directory-of-raw-files", "recommender", "DIR", [REC]),
]
REFUSED = [
    ("nested-list", "recommender", {"data": [_rec(user=USER.reshape(8, 8).tolist())]},
     "entry 0, input 'user_features': value 0 is a nested list"),
    ("json-integers-for-fp32", "recommender", {"data": [_rec(), _rec(item=list(range(64)))]},
     "entry 1, input 'item_features': value 0 is 0; FP32 needs numbers"),
    ("b64-size-wrong", "recommender",
     {"data": [_rec()] * 3 + [_rec(user={"b64": _b64(np.zeros(25, "<f4")), "shape": [64]})]},
     "entry 3, input 'user_features': b64 decodes to 100 bytes, the shape [64] of FP32 needs 256"),
    ("variable-dims-without-shape", "text_classifier",
     {"data": [{"input_ids": IDS.tolist(), "attention_mask": {"content": [1] * 16,
                                                               "shape": [16]}}]},
     "entry 0, input 'input_ids': variable shape [-1] needs the entry's own \"shape\""),
    ("input-missing", "recommender", {"data": [_rec(), {"user_features": USER.tolist()}]},
     "entry 1, input 'item_features': missing"),
    ("shape-incompatible", "recommender",
     {"data": [_rec(user={"content": USER.tolist(), "shape": [2, 32]})]},
     "entry 0, input 'user_features': shape [2, 32] does not match the model's [64]"),
]


@pytest.fixture(scope="module")
def perf_analyzer():
    """The perf_analyzer 2.41 runner; the first call installs it (needs PyPI)."""
    if not PERF_ANALYZER.exists():
        pytest.skip(f"no {PERF_ANALYZER}")
    try:
        proc = subprocess.run([str(PERF_ANALYZER), "--version"], capture_output=True,
                              text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"perf_analyzer cannot be installed or run: {exc}")
    if proc.returncode != 0 or "Perf Analyzer Version" not in proc.stdout + proc.stderr:
        pytest.skip("perf_analyzer cannot be installed (no network?): "
                    + (proc.stderr.strip().splitlines() or ["no output"])[-1])
    return PERF_ANALYZER


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """recommender (FP32, fixed dims) and text_classifier (INT64, variable dims)."""
    log = tmp_path_factory.mktemp("triton-conformance") / "tritonserver.log"
    server = EmbeddedTriton([m for m in demo_fleet() if m.name in MODELS],
                            Ports(*free_ports(start=19800)), log_file=log)
    server.start()
    try:
        target = Target("127.0.0.1", server.ports.http, server.ports.grpc)
        with TritonAdmin(target) as admin:
            infos = {m: ModelInfo.from_served(admin.metadata(m), admin.config(m))
                     for m in MODELS}
        yield server, infos
    finally:
        server.stop()


def _write(tmp_path: Path, case: str, document) -> Path:
    if document == "DIR":
        folder = tmp_path / case
        folder.mkdir()
        (folder / "user_features").write_bytes(USER.tobytes())
        (folder / "item_features").write_bytes(ITEM.tobytes())
        return folder
    path = tmp_path / f"{case}.json"
    path.write_text(json.dumps(document))
    return path


def _perf_analyzer_accepts(runner: Path, server: EmbeddedTriton, model: str, path: Path
                           ) -> tuple[bool, str]:
    proc = subprocess.run([str(runner), "-m", model, "-u", server.grpc_url, "-i", "grpc",
                           "--input-data", str(path), *QUICK],
                          capture_output=True, text=True, timeout=60)
    said = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "rror" in ln]
    return proc.returncode == 0, (said or [f"exit {proc.returncode}"])[-1]


@pytest.mark.parametrize(("case", "model", "document", "entries"), ACCEPTED,
                         ids=[c[0] for c in ACCEPTED])
def test_what_perf_analyzer_accepts_we_read_as_the_same_tensors(
        perf_analyzer, served, tmp_path, case, model, document, entries):
    server, infos = served
    path = _write(tmp_path, case, document)
    accepted, said = _perf_analyzer_accepts(perf_analyzer, server, model, path)
    assert accepted, f"perf_analyzer now refuses {case}: {said}"
    payload = load_payload_file(path, infos[model])
    assert len(payload.entries) == len(entries)
    for got, want in zip(payload.entries, entries, strict=True):
        assert set(got) == set(want)
        for name, array in want.items():
            assert got[name].shape == (1, *array.shape)  # both models batch
            assert got[name].dtype == array.dtype.newbyteorder("=")
            np.testing.assert_array_equal(got[name][0], array)


@pytest.mark.parametrize(("case", "model", "document", "refusal"), REFUSED,
                         ids=[c[0] for c in REFUSED])
def test_what_perf_analyzer_refuses_we_refuse_in_one_line(
        perf_analyzer, served, tmp_path, case, model, document, refusal):
    server, infos = served
    path = _write(tmp_path, case, document)
    accepted, _ = _perf_analyzer_accepts(perf_analyzer, server, model, path)
    assert not accepted, f"perf_analyzer now accepts {case}"
    with pytest.raises(UsageError) as info:
        load_payload_file(path, infos[model])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path.name}: {refusal}"), message
