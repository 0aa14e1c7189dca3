"""The demo fleet as served by the real embedded Triton: configs, inference, statistics."""

from __future__ import annotations

import json
import queue
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from gevent.pool import Pool

from tritonload.server.fleet import DEMO_SHAPES, demo_fleet
from tritonload.server.model_code.demo_functions import FUNCTIONS, generated_token, token_text
from tritonload.triton.admin import TritonAdmin
from tritonload.triton.clients import build_inputs
from tritonload.triton.payloads import ModelInfo, generate_payload

pytestmark = pytest.mark.integration
FLEET = {m.name: m for m in demo_fleet()}
# The wide ranker's 29 MB answers are checked once, over HTTP, to keep the suite quick.
CHECKED = [(n, p) for n in FLEET for p in ("grpc", "http")
           if not (n.startswith("wide_ranker") and p == "grpc") and not FLEET[n].decoupled]


@pytest.fixture(scope="module")
def admin(target):
    with TritonAdmin(target) as client:
        yield client


def expected_outputs(name: str, inputs: dict) -> dict:
    """What the model computes; an ensemble, its steps' functions in turn over its tensors."""
    spec = FLEET[name]
    if not spec.is_ensemble:
        return FUNCTIONS[spec.function](inputs)
    tensors = dict(inputs)
    for step in spec.steps:
        answer = FUNCTIONS[FLEET[step.model].function](
            {own: tensors[outer] for own, outer in step.inputs})
        tensors.update({outer: answer[own] for own, outer in step.outputs})
    return {t.name: tensors[t.name] for t in spec.outputs}


@pytest.mark.parametrize("name", sorted(FLEET))
def test_served_config_matches_spec(admin, name):
    spec = FLEET[name]
    config = admin.config(name)
    assert config["max_batch_size"] == spec.max_batch_size
    if spec.is_ensemble:
        steps = config["ensemble_scheduling"]["step"]
        assert [s["model_name"] for s in steps] == [s.model for s in spec.steps]
        return
    assert sum(int(g["count"]) for g in config["instance_group"]) == spec.instances
    batching = config.get("dynamic_batching")
    if spec.dynamic_batching:
        assert int(batching["max_queue_delay_microseconds"]) == spec.max_queue_delay_us
        if spec.preferred_batch_sizes:  # Triton fills in its own default otherwise
            assert [int(b) for b in batching["preferred_batch_size"]] == list(
                spec.preferred_batch_sizes)
    else:
        assert not batching, f"{name} must not batch"
    meta = admin.metadata(name)
    assert [t["name"] for t in meta["inputs"]] == [t.name for t in spec.inputs]
    assert [t["datatype"] for t in meta["outputs"]] == [t.datatype for t in spec.outputs]


def test_text_classifier_contract(admin):
    meta = admin.metadata("text_classifier")
    assert {(t["name"], t["datatype"], tuple(t["shape"])) for t in meta["inputs"]} == {
        ("input_ids", "INT64", (-1, -1)), ("attention_mask", "INT64", (-1, -1))}
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [
        ("logits", "FP32", [-1, 10])]


def _client(target, protocol):
    module = grpcclient if protocol == "grpc" else httpclient
    return module, module.InferenceServerClient(target.url(protocol))


@pytest.mark.parametrize("name, protocol", CHECKED)
def test_outputs_match_the_deterministic_function(admin, target, name, protocol):
    info = ModelInfo.from_served(admin.metadata(name), admin.config(name))
    payload = generate_payload(info, DEMO_SHAPES.get(name), count=2, seed=7)
    module, client = _client(target, protocol)
    try:
        for entry in payload.entries:
            result = client.infer(name, build_inputs(module, entry))
            expected = expected_outputs(name, dict(entry))
            for output, want in expected.items():
                np.testing.assert_allclose(result.as_numpy(output), want, rtol=1e-5)
    finally:
        client.close()


def _batch_histogram(admin, name):
    (stats,) = admin.statistics(name)
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["batch_stats"]}


@pytest.mark.parametrize("name", ["recommender", "text_classifier"])
def test_dynamic_batching_forms_batches_and_twin_does_not(admin, target, name):
    info = ModelInfo.from_served(admin.metadata(name), admin.config(name))
    entry = generate_payload(info, DEMO_SHAPES.get(name), count=1).entries[0]
    module = httpclient
    clients = [module.InferenceServerClient(target.url("http")) for _ in range(16)]
    try:
        for model in (name, name + "_nobatch"):
            before = _batch_histogram(admin, model)
            inputs = build_inputs(module, entry)
            Pool(16).map(lambda c, m=model, x=inputs: [c.infer(m, x) for _ in range(6)], clients)
            after = _batch_histogram(admin, model)
            delta = {b: after[b] - before.get(b, 0) for b in after if after[b] != before.get(b, 0)}
            assert sum(b * n for b, n in delta.items()) == 16 * 6
            if model.endswith("_nobatch"):
                assert set(delta) == {1}, delta
            else:
                assert max(delta) > 1, f"no batch larger than 1 for {model}: {delta}"
    finally:
        for c in clients:
            c.close()


def _generate_over_grpc(target, prompt: bytes, max_tokens: int) -> list[tuple[float, object]]:
    """tritonclient's stream (the reference client): (arrival s, result or error) per answer."""
    client = grpcclient.InferenceServerClient(target.url("grpc"))
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put(
        (time.perf_counter(), error or result)))
    text = grpcclient.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([prompt], dtype=np.object_))
    limit = grpcclient.InferInput("max_tokens", [1], "INT32")
    limit.set_data_from_numpy(np.array([max_tokens], dtype=np.int32))
    try:
        started = time.perf_counter()
        client.async_stream_infer("text_generator", [text, limit])
        got = []
        while not got or not isinstance(got[-1][1], Exception) and len(got) < max_tokens:
            at, answer = answers.get(timeout=10)
            got.append((at - started, answer))
        return got
    finally:
        client.stop_stream()
        client.close()


def test_the_generator_streams_its_tokens_in_order_over_grpc(target):
    prompt = b"the quick brown fox " * 10  # 40 words: prefill 5 ms + 40 x 50 us
    got = _generate_over_grpc(target, prompt, 6)
    assert [int(a.as_numpy("token_id")[0]) for _, a in got] == [
        generated_token(prompt, i) for i in range(6)]
    assert [a.as_numpy("text_output")[0] for _, a in got] == [
        token_text(generated_token(prompt, i)) for i in range(6)]
    times = [t for t, _ in got]
    assert times == sorted(times) and times[0] < times[-1]
    gaps = np.diff(times)
    assert gaps.min() > 0.012, gaps  # one decode step: 15 ms + 0.5 ms x 1 active


def test_the_generator_aborts_an_abort_prompt_and_refuses_bad_max_tokens(target):
    got = _generate_over_grpc(target, b"ABORT@2 anything", 5)
    assert len(got) == 3 and isinstance(got[-1][1], Exception)
    assert "generation aborted after 2 tokens" in str(got[-1][1])
    (only,) = _generate_over_grpc(target, b"hello", 0)
    assert "max_tokens must be in 1..4096" in str(only[1])


def test_the_generator_streams_server_sent_events_over_http(target):
    body = json.dumps({"text_input": "hello world", "max_tokens": 3}).encode()
    request = urllib.request.Request(
        f"http://{target.host}:{target.http_port}/v2/models/text_generator/generate_stream",
        data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        events = [json.loads(line[len(b"data: "):])
                  for line in answer.read().split(b"\n\n") if line]
    assert [e["token_id"] for e in events] == [generated_token(b"hello world", i)
                                               for i in range(3)]
