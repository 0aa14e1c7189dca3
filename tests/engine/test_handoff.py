"""The master's context, sent to workers as a Locust message, rebuilds as it was validated."""

from __future__ import annotations

import msgpack
import numpy as np

from tritonload.core.config import Target
from tritonload.core.mix import ModelMix
from tritonload.load.arrivals import ArrivalLedger
from tritonload.load.context import RunContext, UserSettings
from tritonload.load.handoff import SEED_STRIDE, context_from_message, context_message
from tritonload.triton.payloads import Payload


class GrpcUsers:  # stand-ins for a locustfile's user classes: only their names travel
    pass


class HttpUsers:
    pass


def _context() -> RunContext:
    entry = {"INPUT": np.arange(12, dtype=np.float32).reshape(1, 3, 4),
             "IDS": np.array([[7, -3]], dtype=np.int64),
             "TEXT": np.array([[b"hello", b"w\x00rld"]], dtype=object)}
    expected = ({"SCORES": np.array([[0.5, 1.5]], dtype=np.float32)},
                {"SCORES": np.array([[2.5, 3.5]], dtype=np.float32)})
    payload = Payload("text_classifier", (entry, entry), ("SCORES",), "generated:random",
                      validation=expected)
    settings = {GrpcUsers: UserSettings(ModelMix.of("text_classifier:5,recommender:3"), "open",
                                        16, 200.0, "constant", 2.5, {"x-team": "ml"}),
                HttpUsers: UserSettings(ModelMix.of({"text_classifier": 1}), "sync", 1)}
    target = Target("127.0.0.1", 18000, 18001, headers={"authorization": "Bearer t"},
                    timeout_s=2.5, embedded=True)
    return RunContext(target, {"text_classifier": payload}, settings, 42, ArrivalLedger())


def test_the_context_survives_msgpack_and_comes_back_equal():
    sent = _context()
    # Through msgpack as Locust sends it: bytes stay bytes, nothing is pickled.
    wire = msgpack.loads(msgpack.dumps(context_message(sent, rate_users=6)), raw=False)
    got = context_from_message(wire, [GrpcUsers, HttpUsers], worker_index=2)
    assert got.target == sent.target
    assert got.settings == sent.settings
    assert got.rate_users == 6
    assert got.seed == 42 + 2 * SEED_STRIDE  # no two workers draw the same arrivals
    assert got.arrivals is not sent.arrivals
    payload, original = got.payloads["text_classifier"], sent.payloads["text_classifier"]
    assert (payload.outputs, payload.source) == (original.outputs, original.source)
    for mine, theirs in zip(payload.entries, original.entries, strict=True):
        assert mine.keys() == theirs.keys()
        for name in theirs:
            assert mine[name].dtype == theirs[name].dtype
            np.testing.assert_array_equal(mine[name], theirs[name])
    assert payload.bytes_per_entry() == original.bytes_per_entry()
    for mine, theirs in zip(payload.validation, original.validation, strict=True):  # --validate
        assert mine["SCORES"].dtype == np.float32
        np.testing.assert_array_equal(mine["SCORES"], theirs["SCORES"])


def test_a_class_the_worker_does_not_define_is_left_out():
    wire = msgpack.loads(msgpack.dumps(context_message(_context(), 1)), raw=False)
    got = context_from_message(wire, [HttpUsers], worker_index=0)
    assert list(got.settings) == [HttpUsers]


def test_worker_ledgers_add_up_interval_by_interval():
    master, worker = ArrivalLedger(), ArrivalLedger()
    for ledger, wall in ((master, 1_000_000_000), (worker, 1_200_000_000),
                         (worker, 2_500_000_000)):
        ledger.count("scheduled", wall)
    worker.count("late", 2_500_000_000)
    master.add_rows(worker.rows())
    assert master.rows() == [
        {"t_start_ns": 1_000_000_000, "t_end_ns": 2_000_000_000, "scheduled": 2, "late": 0,
         "dropped": 0},
        {"t_start_ns": 2_000_000_000, "t_end_ns": 3_000_000_000, "scheduled": 1, "late": 1,
         "dropped": 0}]
