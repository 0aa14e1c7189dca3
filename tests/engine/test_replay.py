"""``--arrival replay``: each payload entry sent at its own ``timestamp``.

The trace below mixes two models at irregular times (a burst, a pause), so a run that kept a
constant pace, or drew models by weight, or sent entries in file order, would not match it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import free_ports
from tests.locust_runs import error_lines, records, run_json, run_locust
from tritonload.core.errors import UsageError
from tritonload.core.mix import ModelMix
from tritonload.load.arrivals import ReplayTrace
from tritonload.load.context import UserSettings
from tritonload.server import EmbeddedTriton, Ports, demo_fleet
from tritonload.triton.payloads import Payload

# ms: recommender in a burst at 0, 100, 200 then 600; text_classifier at 300 and 700. Given
# shifted by 5 s, and out of order, as a real log's timestamps would be.
RECOMMENDER_MS = [5600.0, 5000.0, 5100.0, 5200.0]
TEXT_MS = [5700.0, 5300.0]
PERIOD_MS = 700 * 6 / 5  # the span, plus one mean gap
TRACE = sorted([(t - 5000, "recommender") for t in RECOMMENDER_MS]
               + [(t - 5000, "text_classifier") for t in TEXT_MS])


def _payload(model: str, stamps) -> Payload:
    entries = tuple({"x": np.zeros((1, 2), np.float32)} for _ in stamps)
    return Payload(model, entries, ("y",), f"{model}.json", timestamps=tuple(stamps))


def test_the_trace_is_one_sorted_schedule_repeated_after_one_mean_gap():
    trace = ReplayTrace({"recommender": _payload("recommender", RECOMMENDER_MS),
                         "text_classifier": _payload("text_classifier", TEXT_MS)},
                        ["text_classifier", "recommender", "recommender"])
    assert [(o / 1e6, m) for o, m, _ in trace.items] == TRACE
    assert [i for _, m, i in trace.items if m == "recommender"] == [1, 2, 3, 0]
    assert trace.period_ns == PERIOD_MS * 1e6
    assert trace.rate == pytest.approx(6 / (PERIOD_MS / 1e3))
    sends = [trace.take() for _ in range(13)]
    start = sends[0][0]
    offsets = [(due - start) / 1e6 for due, _, _ in sends]
    assert offsets[:7] == [0, 100, 200, 300, 600, 700, PERIOD_MS]
    assert offsets[12] == 2 * PERIOD_MS
    trace.rewind()
    assert trace.take()[1:] == ("recommender", 1)


def test_what_cannot_be_replayed_is_one_line():
    with pytest.raises(UsageError, match="recommender's payload .* has no \"timestamp\""):
        ReplayTrace({"recommender": Payload("recommender", ({},), ("y",), "generated")},
                    ["recommender"])
    with pytest.raises(UsageError, match="r.json: entry 1 has no \"timestamp\"; every entry"):
        ReplayTrace({"r": _payload("r", [1.0, None])}, ["r"])
    with pytest.raises(UsageError, match="at least 2 timestamped entries"):
        ReplayTrace({"r": _payload("r", [1.0])}, ["r"])
    with pytest.raises(UsageError, match="--arrival replay needs --mode open"):
        UserSettings(ModelMix.of("r:1"), "async", 4, arrival="replay")
    UserSettings(ModelMix.of("r:1"), "open", 4, rate=None, arrival="replay")  # no rate needed


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    log = tmp_path_factory.mktemp("triton-replay") / "tritonserver.log"
    server = EmbeddedTriton([m for m in demo_fleet()
                             if m.name in ("recommender", "text_classifier")],
                            Ports(*free_ports(start=19740)), log_file=log)
    server.start()
    yield server
    server.stop()


def _files(tmp_path, with_stamps: bool = True):
    rec = [{"user_features": [float(k)] * 64, "item_features": [0.5] * 64} for k in range(4)]
    text = [{"input_ids": {"content": [7] * n, "shape": [n]},
             "attention_mask": {"content": [1] * n, "shape": [n]}} for n in (8, 16)]
    for entries, stamps in ((rec, RECOMMENDER_MS), (text, TEXT_MS)):
        for entry, stamp in zip(entries, stamps, strict=True):
            if with_stamps:
                entry["timestamp"] = stamp
    (tmp_path / "rec.json").write_text(json.dumps({"data": rec}))
    (tmp_path / "text.json").write_text(json.dumps({"data": text}))
    return ("--payload", f"recommender={tmp_path / 'rec.json'}",
            "--payload", f"text_classifier={tmp_path / 'text.json'}")


def _run(served, tmp_path, *args):
    return run_locust("locustfiles/mixed_models.py", "-u", "2", "-r", "2", "-t", "4s",
                      "--host", f"127.0.0.1:{served.ports.http}", "--mode", "open",
                      "--arrival", "replay", "--mix", "recommender:1,text_classifier:1",
                      "--run-dir", str(tmp_path / "run"), *args, cwd=tmp_path)


def test_a_run_sends_each_entry_at_its_timestamp(served, tmp_path):
    proc = _run(served, tmp_path, *_files(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--arrival replay: 6 timestamped sends over 0.8 s (7.1 req/s)" in proc.stderr
    frame = records(tmp_path / "run").sort_values("intended_start_ns")
    assert (frame["error_kind"] == "").all()
    assert set(frame["protocol"]) == {"grpc", "http"}  # both classes' users share the trace
    # 4 s of an 840 ms trace, the first user starting it: 4 to 5 laps, every send kept.
    assert 22 <= len(frame) <= 30, len(frame)
    offsets_ms = (frame["intended_start_ns"] - frame["intended_start_ns"].iloc[0]) / 1e6
    sends = [(round(o % PERIOD_MS, 1), m) for o, m in zip(offsets_ms, frame["model"],
                                                              strict=True)]
    for k, (offset, model) in enumerate(sends):
        want_offset, want_model = TRACE[k % len(TRACE)]
        assert model == want_model, (k, sends)
        assert abs(offset - want_offset) < 0.5 or abs(offset - want_offset - PERIOD_MS) < 0.5, \
            (k, sends)
    # text_classifier's entries by their timestamps, not in file order: the 16-token entry
    # (at 300 ms) before the 8-token one (at 700 ms), lap after lap.
    sizes = frame.loc[frame["model"] == "text_classifier", "bytes_sent"].tolist()
    assert len(set(sizes[0::2])) == 1 and len(set(sizes[1::2])) == 1 and sizes[0] > sizes[1]
    meta = run_json(tmp_path / "run")
    assert meta["load"] == {"kind": "rate", "level": pytest.approx(6 / (PERIOD_MS / 1e3))}
    assert meta["arrivals"]["scheduled"] == len(frame) and meta["arrivals"]["dropped"] == 0


def test_a_file_without_timestamps_stops_at_preflight(served, tmp_path):
    proc = _run(served, tmp_path, *_files(tmp_path, with_stamps=False))
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert "--arrival replay: recommender's payload" in line and "no \"timestamp\"" in line
    assert "Traceback" not in proc.stderr
