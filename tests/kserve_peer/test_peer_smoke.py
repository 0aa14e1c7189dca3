"""The KServe peer answers tritonclient over both protocols, with the right numbers."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

RNG = np.random.default_rng(7)
USERS = RNG.standard_normal((3, 64), dtype=np.float32)
ITEMS = RNG.standard_normal((3, 64), dtype=np.float32)
SCORES = (USERS * ITEMS).sum(axis=1, keepdims=True)


def _inputs(module):
    tensors = [module.InferInput("user_features", [3, 64], "FP32"),
               module.InferInput("item_features", [3, 64], "FP32")]
    tensors[0].set_data_from_numpy(USERS)
    tensors[1].set_data_from_numpy(ITEMS)
    return tensors


def _shapes(tensors) -> dict:
    return {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in tensors}


def test_http_metadata_and_infer(kserve_peer):
    client = httpclient.InferenceServerClient(kserve_peer.http_url)
    meta = client.get_model_metadata("recommender")
    assert _shapes(meta["inputs"]) == {"user_features": ("FP32", [-1, 64]),
                                       "item_features": ("FP32", [-1, 64])}
    assert _shapes(meta["outputs"]) == {"score": ("FP32", [-1, 1])}
    fixed = client.get_model_metadata("fixed_scorer")  # no batch dimension: no leading -1
    assert _shapes(fixed["inputs"]) == {"x": ("FP32", [4])}
    assert _shapes(fixed["outputs"]) == {"y": ("FP32", [4])}
    result = client.infer("recommender", _inputs(httpclient))  # binary tensors both ways
    np.testing.assert_allclose(result.as_numpy("score"), SCORES, rtol=1e-5, atol=1e-5)


def test_grpc_metadata_and_infer(kserve_peer):
    client = grpcclient.InferenceServerClient(kserve_peer.grpc_url)
    meta = client.get_model_metadata("recommender", as_json=True)
    assert _shapes(meta["inputs"]) == {"user_features": ("FP32", [-1, 64]),
                                       "item_features": ("FP32", [-1, 64])}
    assert _shapes(meta["outputs"]) == {"score": ("FP32", [-1, 1])}
    fixed = client.get_model_metadata("fixed_scorer", as_json=True)
    assert _shapes(fixed["inputs"]) == {"x": ("FP32", [4])}
    result = client.infer("recommender", _inputs(grpcclient))
    assert len(result.get_response().raw_output_contents) == 1  # raw in, raw out
    np.testing.assert_allclose(result.as_numpy("score"), SCORES, rtol=1e-5, atol=1e-5)
