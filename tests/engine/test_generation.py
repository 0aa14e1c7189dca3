"""Unit tests of the LLM users' prompts, generation numbers and generation SLOs (no server)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tritonload.core.errors import UsageError
from tritonload.core.numbers import summarize
from tritonload.core.slo import evaluate, parse_slo
from tritonload.core.tokens import summarize_tokens
from tritonload.triton.payloads import ModelInfo, TensorInfo
from tritonload.triton.prompts import (
    Lengths,
    PromptSpec,
    generate_json,
    prompt_payload,
    prompt_tokens,
)

GENERATOR = ModelInfo("text_generator", (TensorInfo("text_input", "BYTES", (1,)),
                                         TensorInfo("max_tokens", "INT32", (1,))),
                      ("text_output", "token_id"), 0, decoupled=True)


def test_lengths_are_fixed_normal_or_from_a_file(tmp_path):
    rng = np.random.default_rng(0)
    assert (Lengths.parse("64", "--osl").draw(rng, 5) == 64).all()
    normal = Lengths.parse("200,40", "--isl").draw(rng, 4000)
    assert abs(normal.mean() - 200) < 3 and abs(normal.std() - 40) < 3 and normal.min() >= 1
    path = tmp_path / "lengths.txt"
    path.write_text("3\n7\n")
    from_file = Lengths.parse(f"@{path}", "--isl")
    assert set(from_file.draw(rng, 50)) == {3, 7} and from_file.describe().startswith("2 values")
    for bad in ("0", "-3,1", "x", "5,-1"):
        with pytest.raises(UsageError):
            Lengths.parse(bad, "--isl")


def test_prompts_follow_the_lengths_and_share_system_prompts():
    spec = PromptSpec(isl=Lengths(30), osl=Lengths(9), system_prompts=2, system_prompt_length=5)
    payload = prompt_payload(GENERATOR, spec, seed=1, count=6)
    prompts = [e["text_input"][0] for e in payload.entries]
    assert [prompt_tokens(e) for e in payload.entries] == [35] * 6
    assert len({p.split()[0] for p in prompts}) == 2  # the system prompts, in turn
    assert prompts[0].split()[:5] == prompts[2].split()[:5]
    assert all(e["max_tokens"].dtype == np.int32 and e["max_tokens"].tolist() == [9]
               for e in payload.entries)
    assert prompt_payload(GENERATOR, spec, seed=1, count=6).entries[3]["text_input"][0] == \
        prompts[3]  # seeded


def test_a_dataset_gives_the_prompts_and_their_lengths(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "one two three", "max_tokens": 4}\n{"text": "four"}\n')
    payload = prompt_payload(GENERATOR, PromptSpec(osl=Lengths(7), dataset=str(path)), count=4)
    assert [e["text_input"][0] for e in payload.entries] == [b"one two three", b"four"] * 2
    assert [int(e["max_tokens"][0]) for e in payload.entries] == [4, 7, 4, 7]
    path.write_text('{"prompt": "x"}\n')
    with pytest.raises(UsageError, match="line 1 is not a JSON object with \"text\""):
        prompt_payload(GENERATOR, PromptSpec(dataset=str(path)))


#: text_generator as served: its prompt as text or as token ids (both optional inputs).
BOTH = ModelInfo("text_generator", (TensorInfo("text_input", "BYTES", (1,)),
                                    TensorInfo("input_ids", "INT64", (-1,)),
                                    TensorInfo("max_tokens", "INT32", (1,))),
                 ("text_output", "token_id"), 0, decoupled=True)


def test_token_id_prompts_follow_the_lengths_and_share_system_prompts():
    spec = PromptSpec(isl=Lengths(30), osl=Lengths(9), system_prompts=2,
                      system_prompt_length=5, token_ids=True)
    payload = prompt_payload(BOTH, spec, seed=1, count=6)
    assert all(set(e) == {"input_ids", "max_tokens"} for e in payload.entries)
    ids = [e["input_ids"] for e in payload.entries]
    assert all(a.dtype == np.int64 and a.shape == (35,) for a in ids)
    assert [prompt_tokens(e) for e in payload.entries] == [35] * 6
    assert (ids[0][:5] == ids[2][:5]).all() and not (ids[0][:5] == ids[1][:5]).all()
    assert all(0 <= a.min() and a.max() < 32000 for a in ids)
    assert generate_json(payload.entries[0])["input_ids"] == ids[0].tolist()
    # Without --token-ids, the same model gets text; a model with ids only gets ids.
    assert set(prompt_payload(BOTH, PromptSpec(), count=1).entries[0]) == {
        "text_input", "max_tokens"}
    ids_only = ModelInfo("raw", (BOTH.inputs[1], BOTH.inputs[2]), ("token_id",), 0,
                         decoupled=True)
    assert set(prompt_payload(ids_only, PromptSpec(), count=1).entries[0]) == {
        "input_ids", "max_tokens"}


def test_a_dataset_of_token_ids_is_sent_as_ids(tmp_path):
    path = tmp_path / "ids.jsonl"
    path.write_text('{"input_ids": [5, 7, 9], "max_tokens": 2}\n')
    payload = prompt_payload(BOTH, PromptSpec(dataset=str(path)), count=2)
    assert payload.entries[0]["input_ids"].tolist() == [5, 7, 9]
    assert prompt_tokens(payload.entries[0]) == 3
    path.write_text('{"text": "one two"}\n')
    with pytest.raises(UsageError, match="no tokenizer is used here"):
        prompt_payload(BOTH, PromptSpec(dataset=str(path), token_ids=True))
    with pytest.raises(UsageError, match="it takes text_input BYTES, max_tokens INT32"):
        prompt_payload(GENERATOR, PromptSpec(token_ids=True))


def test_a_model_that_does_not_generate_is_refused_in_one_line():
    unary = ModelInfo("recommender", (TensorInfo("user_features", "FP32", (64,)),), ("score",), 8)
    with pytest.raises(UsageError, match="not a decoupled"):
        prompt_payload(unary, PromptSpec())
    odd = ModelInfo("chat", (TensorInfo("prompt", "BYTES", (1,)),), ("out",), 0, decoupled=True)
    with pytest.raises(UsageError, match="it takes prompt BYTES"):
        prompt_payload(odd, PromptSpec())


def _generations() -> pd.DataFrame:
    return pd.DataFrame({
        "intended_start_ns": [0, 0, 0, 0], "latency_us": [100_000.0, 90_000.0, 50.0, 60_000.0],
        "ok": [True, True, True, False], "ttft_us": [10_000.0, 30_000.0, 50.0, 5_000.0],
        "tokens_in": [10, 20, 30, 40], "tokens_out": [4, 3, 1, 2],
        "itl_us": [[20_000.0, 30_000.0, 40_000.0], [20_000.0, 40_000.0], None, [55_000.0]]})


def test_generation_numbers_pool_the_gaps_and_count_every_token():
    numbers = summarize_tokens(_generations(), duration_s=2.0)
    assert (numbers.generations, numbers.ok, numbers.tokens_out) == (4, 3, 10)
    assert numbers.output_tokens_per_s == 5.0 and numbers.request_rps == 1.5
    assert numbers.percentile_ms("itl", 50) == 30.0  # of 20, 20, 30, 40, 40 (failed: out)
    assert numbers.percentile_ms("tt2t", 50) == 20.0 and numbers.percentile_ms("ttft", 50) == 10.0
    assert numbers.tokens_in_mean == 20.0
    # Goodput: TTFT ≤ 20 ms and mean gap ≤ 35 ms: the first (30 ms) and the one-token answer.
    assert numbers.goodput_rps(ttft_ms=20, itl_ms=35) == 1.0
    assert numbers.goodput_rps() == numbers.request_rps


def test_generation_slos_parse_and_judge_the_generations():
    assert parse_slo("ttft=200ms").name == "ttft_p95" and parse_slo("itl_p50=30ms").limit == 30
    assert parse_slo("ttft_p99=1s").limit == 1000.0
    with pytest.raises(UsageError, match="give a latency unit"):
        parse_slo("itl=30")
    tokens = summarize_tokens(_generations(), duration_s=2.0)
    plain = summarize(np.array([1000.0]), np.array([True]), 1.0)
    verdicts = evaluate([parse_slo("ttft=40ms"), parse_slo("itl_p50=25ms")], plain, tokens)
    assert [v.ok for v in verdicts] == [True, False]
    (none,) = evaluate([parse_slo("ttft=40ms")], plain, None)  # no generations: a breach
    assert not none.ok and math.isinf(none.measured)
