"""Payload files (perf_analyzer format) and generated payloads, validated against metadata."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tritonload.core.errors import UsageError
from tritonload.server.fleet import DEMO_SHAPES, demo_fleet
from tritonload.triton.admin import TritonAdmin
from tritonload.triton.payloads import (
    ModelInfo,
    TensorInfo,
    generate_payload,
    load_payload_file,
    payload_document,
)

REPO = Path(__file__).resolve().parents[2]
RECOMMENDER = ModelInfo("recommender", (TensorInfo("user_features", "FP32", (64,)),
                                        TensorInfo("item_features", "FP32", (64,))),
                        ("score",), 128, (TensorInfo("score", "FP32", (1,)),))
TEXT = ModelInfo("text_classifier", (TensorInfo("input_ids", "INT64", (-1,)),
                                     TensorInfo("attention_mask", "INT64", (-1,))), ("logits",), 32)
STRINGS = ModelInfo("tok", (TensorInfo("text", "BYTES", (2,)),), ("out",), 0)


def write(tmp_path, document, name="p.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


def test_flat_lists_round_robin_with_batch_dim(tmp_path):
    entries = [{"user_features": [float(i)] * 64, "item_features": [1.0] * 64} for i in range(3)]
    payload = load_payload_file(write(tmp_path, {"data": entries}), RECOMMENDER)
    assert len(payload.entries) == 3
    assert payload.entries[2]["user_features"].shape == (1, 64)
    assert payload.entries[2]["user_features"].dtype == np.float32
    assert payload.entries[2]["user_features"][0, 0] == 2.0


def test_content_shape_and_b64(tmp_path):
    ids = np.arange(16, dtype="<i8")
    document = {"data": [{
        "input_ids": {"content": {"b64": base64.b64encode(ids.tobytes()).decode()}, "shape": [16]},
        "attention_mask": {"content": [1] * 16, "shape": [16]},
    }]}
    payload = load_payload_file(write(tmp_path, document), TEXT)
    np.testing.assert_array_equal(payload.entries[0]["input_ids"][0], ids)
    assert payload.entries[0]["attention_mask"].shape == (1, 16)


def test_bytes_b64_with_length_prefixes_and_streams(tmp_path):
    raw = b"".join(struct.pack("<I", len(w)) + w for w in (b"hello", b"triton"))
    document = {"data": [[{"text": {"b64": base64.b64encode(raw).decode()}}],
                         [{"text": ["a", "b"]}]]}
    payload = load_payload_file(write(tmp_path, document), STRINGS)
    assert list(payload.entries[0]["text"]) == [b"hello", b"triton"]
    assert list(payload.entries[1]["text"]) == [b"a", b"b"]


def test_b64_with_shape_for_a_variable_input(tmp_path):
    """The reported bug (issue 13): {"b64", "shape"} without "content", as perf_analyzer reads."""
    ids = np.arange(64, dtype="<i8")
    document = {"data": [{"input_ids": {"b64": base64.b64encode(ids.tobytes()).decode(),
                                        "shape": [64]},
                          "attention_mask": {"content": [1] * 64, "shape": [64]}}]}
    payload = load_payload_file(write(tmp_path, document), TEXT)
    np.testing.assert_array_equal(payload.entries[0]["input_ids"], ids[np.newaxis])
    assert payload.streams == (1,) and payload.validation is None


def test_b64_and_content_without_shape_take_the_models_fixed_dims(tmp_path):
    user = np.linspace(0, 1, 64, dtype="<f4")
    document = {"data": [{"user_features": {"b64": base64.b64encode(user.tobytes()).decode()},
                          "item_features": {"content": [2.5] * 64}}]}
    entry = load_payload_file(write(tmp_path, document), RECOMMENDER).entries[0]
    np.testing.assert_array_equal(entry["user_features"][0], user)
    np.testing.assert_array_equal(entry["item_features"][0], np.full(64, 2.5, np.float32))


def test_b64_is_decoded_leniently_like_libb64(tmp_path):
    user = np.arange(64, dtype="<f4")
    text = base64.b64encode(user.tobytes()).decode()
    document = {"data": [{"user_features": {"b64": "!!" + text[:10] + "\n" + text[10:]},
                          "item_features": [1.0] * 64}]}
    entry = load_payload_file(write(tmp_path, document), RECOMMENDER).entries[0]
    np.testing.assert_array_equal(entry["user_features"][0], user)


def test_nan_and_infinity_are_read(tmp_path):
    text = ('{"data": [{"user_features": [NaN' + ", 1.0" * 63 + '], "item_features": [Infinity'
            + ", 1.0" * 63 + "]}]}")
    entry = load_payload_file(write(tmp_path, text), RECOMMENDER).entries[0]
    assert np.isnan(entry["user_features"][0, 0]) and np.isinf(entry["item_features"][0, 0])


def test_streams_keep_their_lengths_and_shapes_may_vary_per_entry(tmp_path):
    def step(n):
        return {"input_ids": {"content": list(range(n)), "shape": [n]},
                "attention_mask": {"content": [1] * n, "shape": [n]}}
    document = {"data": [[step(4), step(8)], [step(2)]]}
    payload = load_payload_file(write(tmp_path, document), TEXT)
    assert payload.streams == (2, 1)
    assert [e["input_ids"].shape for e in payload.entries] == [(1, 4), (1, 8), (1, 2)]


def test_keys_that_are_not_inputs_are_ignored_as_perf_analyzer_does(tmp_path):
    entry = {"user_features": [1.0] * 64, "item_features": [1.0] * 64, "model": "recommender",
             "parameters": {"a": 1}, "timestamp": 1000, "item_featurez": [1.0]}
    payload = load_payload_file(write(tmp_path, {"data": [entry]}), RECOMMENDER)
    assert set(payload.entries[0]) == {"user_features", "item_features"}


def test_timestamps_are_parsed_and_exposed(tmp_path):
    rows = [{"user_features": [1.0] * 64, "item_features": [1.0] * 64, "timestamp": t}
            for t in (0, 12.5, "soon")] + [{"user_features": [1.0] * 64,
                                             "item_features": [1.0] * 64}]
    payload = load_payload_file(write(tmp_path, {"data": rows}), RECOMMENDER)
    assert payload.timestamps == (0, 12.5, None, None)
    assert load_payload_file(write(tmp_path, {"data": rows[3:]}), RECOMMENDER).timestamps is None


def test_validation_data_is_parsed_and_aligned(tmp_path):
    rows = [{"user_features": [1.0] * 64, "item_features": [1.0] * 64}] * 2
    document = {"data": rows, "validation_data": [{"score": [0.5]}, {"score": [0.25]}]}
    payload = load_payload_file(write(tmp_path, document), RECOMMENDER)
    assert [v["score"].tolist() for v in payload.validation] == [[[0.5]], [[0.25]]]
    streamed = {"data": [rows, rows[:1]], "validation_data": [[{"score": [0.5]}] * 2,
                                                              [{"score": [0.1]}]]}
    assert len(load_payload_file(write(tmp_path, streamed), RECOMMENDER).validation) == 3
    with pytest.raises(UsageError, match='"validation_data" does not align with "data"'):
        load_payload_file(write(tmp_path, {"data": rows, "validation_data": [{}]}), RECOMMENDER)


def test_bytes_as_strings_b64_and_refusals(tmp_path):
    raw = b"".join(struct.pack("<I", len(w)) + w for w in (b"hello", b"triton"))
    ok = {"data": [{"text": {"b64": base64.b64encode(raw).decode(), "shape": [2]}},
                   {"text": ["x", "y"]}]}
    payload = load_payload_file(write(tmp_path, ok), STRINGS)
    assert [list(e["text"]) for e in payload.entries] == [[b"hello", b"triton"], [b"x", b"y"]]
    for document, fragment in [
        ({"text": [1, 2]}, "value 0 is 1; BYTES needs strings"),
        ({"text": {"b64": base64.b64encode(raw[:-3]).decode()}}, ".* past the end"),
        ({"text": {"b64": base64.b64encode(raw[:7]).decode()}}, ".* past the end"),
        ({"text": {"b64": base64.b64encode(raw[:2]).decode()}}, ".*truncated BYTES element"),
        ({"text": ["only one"]}, "1 values, the shape \\[2\\] needs 2"),
    ]:
        with pytest.raises(UsageError, match="entry 0, input 'text': " + fragment):
            load_payload_file(write(tmp_path, {"data": [document]}), STRINGS)


def test_a_directory_of_raw_files(tmp_path):
    user, item = np.arange(64, dtype="<f4"), np.ones(64, dtype="<f4")
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "user_features").write_bytes(user.tobytes())
    (folder / "item_features").write_bytes(item.tobytes())
    (folder / "score").write_bytes(b"\0" * 4)  # an output file: ignored, as by perf_analyzer
    payload = load_payload_file(folder, RECOMMENDER)
    (entry,) = payload.entries
    np.testing.assert_array_equal(entry["user_features"], user[np.newaxis])
    (folder / "item_features").write_bytes(item.tobytes()[:100])
    with pytest.raises(UsageError, match="dir/: entry 0, input 'item_features': file "
                                         "item_features holds 100 bytes, the shape \\[64\\] "
                                         "of FP32 needs 256"):
        load_payload_file(folder, RECOMMENDER)
    (folder / "item_features").unlink()
    with pytest.raises(UsageError, match="input 'item_features': no file"):
        load_payload_file(folder, RECOMMENDER)
    with pytest.raises(UsageError, match="input 'input_ids': variable shape \\[-1\\] cannot"):
        load_payload_file(folder, TEXT)


def test_a_directory_with_strings_one_a_line(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "text").write_text("hello world\ntriton\n")
    (entry,) = load_payload_file(folder, STRINGS).entries
    assert list(entry["text"]) == [b"hello world", b"triton"]
    (folder / "text").write_text("one\n")
    with pytest.raises(UsageError, match="has 1 lines, the shape \\[2\\] needs 2"):
        load_payload_file(folder, STRINGS)


def _rec(user=None, item=None):
    return {"user_features": [1.0] * 64 if user is None else user,
            "item_features": [1.0] * 64 if item is None else item}


@pytest.mark.parametrize("document, fragment", [
    ("{not json", "is not valid JSON"),
    ({"rows": []}, 'expected {"data"'),
    ({"data": []}, 'expected {"data"'),
    ({"data": [[_rec()], _rec()]}, '"data" mixes streams'),
    ({"data": [_rec(), 5]}, "p.json: entry 1: expected an object"),
    ({"data": [_rec(), {"user_features": [1.0] * 64}]},
     "p.json: entry 1, input 'item_features': missing"),
    ({"data": [[_rec()], [_rec(), _rec(user=[1.0] * 63)]]},
     "p.json: entry 2 \\(stream 1, step 1\\), input 'user_features': 63 values, the shape "
     "\\[64\\] needs 64"),
    ({"data": [_rec(user=[1.0] * 65)]}, "65 values, the shape \\[64\\] needs 64"),
    ({"data": [_rec(user={"content": [1.0] * 32, "shape": [2, 16]})]},
     "input 'user_features': shape \\[2, 16\\] does not match the model's \\[64\\]"),
    ({"data": [_rec(user={"content": [1.0] * 64, "shape": [1, 64]})]},
     "shape \\[1, 64\\] does not match"),
    ({"data": [_rec(user={"content": [1.0] * 64, "shape": [64.0]})]},
     '"shape" must be a list of integers'),
    ({"data": [_rec(user={"shape": [64]})]}, 'the object needs "content" or "b64"'),
    ({"data": [_rec(user={"content": {"x": 1}})]}, '"content" must be a list'),
    ({"data": [_rec(user=1.0)]}, "expected a list of values"),
    ({"data": [_rec(user=[[1.0] * 8] * 8)]}, "value 0 is a nested list"),
    ({"data": [_rec(user=[1] * 64)]}, "value 0 is 1; FP32 needs numbers with a fraction"),
    ({"data": [_rec(user=["1.5"] * 64)]}, "value 0 is '1.5'; FP32"),
    ({"data": [_rec(user=[True] * 64)]}, "value 0 is True; FP32"),
    ({"data": [_rec(user={"b64": 5})]}, "b64 must be a string"),
    ({"data": [_rec(), _rec(), _rec(), _rec(user={"b64": base64.b64encode(b"\0" * 100).decode(),
                                                  "shape": [64]})]},
     "p.json: entry 3, input 'user_features': b64 decodes to 100 bytes, the shape \\[64\\] of "
     "FP32 needs 256"),
])
def test_malformed_files_are_one_clear_line(tmp_path, document, fragment):
    with pytest.raises(UsageError, match=fragment) as info:
        load_payload_file(write(tmp_path, document), RECOMMENDER)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("ids, fragment", [
    ({"content": [1.5] * 4, "shape": [4]}, "value 0 is 1.5; INT64 needs integers within int64"),
    ({"content": [2 ** 63] * 4, "shape": [4]}, "value 0 is 9223372036854775808; INT64"),
    ([1] * 4, "variable shape \\[-1\\] needs the entry's own \"shape\""),
    ({"b64": base64.b64encode(b"\0" * 32).decode()}, "variable shape"),
    ({"content": [1] * 4, "shape": [-1]}, "variable shape"),
    ({"b64": base64.b64encode(b"\0" * 100).decode(), "shape": [16]},
     "b64 decodes to 100 bytes, the shape \\[16\\] of INT64 needs 128"),
])
def test_malformed_variable_shape_entries(tmp_path, ids, fragment):
    document = {"data": [{"input_ids": ids, "attention_mask": {"content": [1] * 4, "shape": [4]}}]}
    with pytest.raises(UsageError, match="p.json: entry 0, input 'input_ids': " + fragment):
        load_payload_file(write(tmp_path, document), TEXT)


def test_int64_limits_and_int32(tmp_path):
    document = {"data": [{"input_ids": {"content": [2 ** 63 - 1, -(2 ** 63), 0, 1], "shape": [4]},
                          "attention_mask": {"content": [1] * 4, "shape": [4]}}]}
    entry = load_payload_file(write(tmp_path, document), TEXT).entries[0]
    assert entry["input_ids"][0, 0] == 2 ** 63 - 1 and entry["input_ids"].dtype == np.int64
    small = ModelInfo("m", (TensorInfo("x", "INT32", (2,)),), ("y",), 0)
    assert load_payload_file(write(tmp_path, {"data": [{"x": [7, -7]}]}), small
                             ).entries[0]["x"].dtype == np.int32
    with pytest.raises(UsageError, match="value 1 is 2147483648; INT32 needs integers within"):
        load_payload_file(write(tmp_path, {"data": [{"x": [7, 2 ** 31]}]}), small)


@pytest.mark.parametrize("model", ["text_classifier", "image_classifier", "recommender",
                                   "narrow_ranker", "wide_ranker"])
def test_shipped_payload_files_still_load(model):
    """Against the fleet's own specs (no server): the stricter typing refuses none of them."""
    spec = next(m for m in demo_fleet() if m.name == model)
    info = ModelInfo(model, tuple(TensorInfo(t.name, t.datatype, t.dims) for t in spec.inputs),
                     tuple(t.name for t in spec.outputs), spec.max_batch_size)
    assert load_payload_file(REPO / "payloads" / f"{model}.json", info).entries


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_payload_file(tmp_path / "nope.json", RECOMMENDER)


def test_variable_shape_needs_override():
    with pytest.raises(UsageError, match="--shape text_classifier.input_ids="):
        generate_payload(TEXT)
    payload = generate_payload(TEXT, {"input_ids": (128,), "attention_mask": (128,)}, count=3)
    assert payload.entries[0]["input_ids"].shape == (1, 128)
    assert payload.entries[0]["input_ids"].dtype == np.int64


def test_generated_payload_round_trips_through_perf_analyzer_format(tmp_path):
    payload = generate_payload(TEXT, {"input_ids": (8,), "attention_mask": (8,)}, count=2)
    for b64 in (False, True):
        path = write(tmp_path, payload_document(payload, TEXT, b64=b64), f"rt{b64}.json")
        again = load_payload_file(path, TEXT)
        for a, b in zip(payload.entries, again.entries, strict=True):
            for name in a:
                np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.integration
@pytest.mark.parametrize("model", ["text_classifier", "image_classifier", "recommender",
                                   "narrow_ranker", "wide_ranker"])
def test_shipped_payload_files_validate_against_served_models(target, model):
    with TritonAdmin(target) as admin:
        for name in (model, model + "_nobatch"):
            info = ModelInfo.from_served(admin.metadata(name), admin.config(name))
            payload = load_payload_file(REPO / "payloads" / f"{model}.json", info)
            assert payload.entries and payload.model == name
            generate_payload(info, DEMO_SHAPES.get(name))  # generation works for every model too
