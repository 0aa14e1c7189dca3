"""Payload files (perf_analyzer format) and generated payloads, validated against metadata."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tritonload.core.errors import UsageError
from tritonload.server.fleet import DEMO_SHAPES
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
                        ("score",), 128)
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


@pytest.mark.parametrize("document, fragment", [
    ("{not json", "is not valid JSON"),
    ({"rows": []}, 'expected {"data"'),
    ({"data": [{"user_features": [1.0] * 64}]}, "input 'item_features' is missing"),
    ({"data": [{"user_features": [1.0] * 64, "item_features": [1.0] * 64, "x": [1]}]},
     "has no input 'x'"),
    ({"data": [{"user_features": [1.0] * 63, "item_features": [1.0] * 64}]},
     "63 values do not fill shape \\[64\\]"),
    ({"data": [{"user_features": {"content": [1.0] * 32, "shape": [2, 16]},
                "item_features": [1.0] * 64}]},
     "recommender: input 'user_features' shape mismatch: expected \\[64\\].*got \\[2, 16\\]"),
    ({"data": [{"user_features": ["a"] * 64, "item_features": [1.0] * 64}]}, "are not float32"),
    ({"data": [{"user_features": {"b64": "!!"}, "item_features": [1.0] * 64}]}, "not valid base64"),
])
def test_malformed_files_are_one_clear_line(tmp_path, document, fragment):
    with pytest.raises(UsageError, match=fragment) as info:
        load_payload_file(write(tmp_path, document), RECOMMENDER)
    assert "\n" not in str(info.value)


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
