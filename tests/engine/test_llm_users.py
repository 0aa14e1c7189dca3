"""LLM users against the real server: generations recorded token by token, beside classic users.

The session's embedded server serves ``text_generator`` with the fleet's costs: a prefill of
5 ms + 50 µs per prompt word, decode steps of 15 ms + 0.5 ms per active sequence.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.locust_runs import REPO, error_lines, records, run_json
from tritonload.core.numbers import run_window
from tritonload.core.tokens import run_tokens, token_numbers

pytestmark = pytest.mark.integration


def _run(tmp_path, target, *args: str, name: str = "run") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tritonload.cli", "run", "llm", "--url", target.as_url(),
         "--run-dir", str(tmp_path / name), *args],
        capture_output=True, text=True, timeout=180, cwd=REPO)


def test_generations_are_recorded_token_by_token_beside_classic_requests(tmp_path, target):
    proc = _run(tmp_path, target, "-u", "4", "-t", "6s", "--isl", "40,10", "--osl", "12",
                "--num-system-prompts", "2", "--system-prompt-length", "20",
                "--report", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = records(tmp_path / "run")
    generations = rows[rows["model"] == "text_generator"]
    classic = rows[rows["model"] == "recommender"]
    assert len(generations) >= 10 and len(classic) >= 100
    assert set(generations["protocol"]) == {"grpc", "http"}  # ModelStreamInfer, generate_stream
    assert generations["ok"].all() and (generations["tokens_out"] == 12).all()
    # A prompt: a system prompt (20 words) and about 40 words of its own.
    assert generations["tokens_in"].between(20 + 10, 20 + 80).all()
    assert (generations["ttft_us"] < generations["latency_us"]).all()
    assert all(len(gaps) == 11 for gaps in generations["itl_us"])
    gaps = np.concatenate(generations["itl_us"].to_numpy())
    assert 14_000 < np.median(gaps) < 25_000  # a decode step: 15 ms + 0.5 ms per sequence
    # E2E is TTFT plus the gaps (the same clock, µs apart at most).
    e2e = generations["ttft_us"] + generations["itl_us"].map(sum)
    assert (generations["latency_us"] - e2e).between(0, 5_000).all()
    assert classic["ttft_us"].isna().all() and classic["itl_us"].isna().all()
    meta = run_json(tmp_path / "run")
    assert meta["generation"] == {"isl": "40 ± 10", "osl": "12", "system_prompts": 2,
                                  "system_prompt_length": 20, "dataset": None,
                                  "token_ids": False}
    assert "generations: " in proc.stdout and "output tokens/s" in proc.stdout
    # The run's load counts all 4 users; the generations are read at the LLM users' own.
    classes = meta["user_classes"]
    assert sum(c["users"] for c in classes.values()) == 4 == meta["load"]["level"]
    llm_users = sum(c["users"] for c in classes.values() if c["generative"])
    assert 0 < llm_users < 4 and not classes["ClassicUser"]["generative"]
    assert meta["generation_load"] == {"kind": "concurrency", "level": llm_users}
    # The report's generations are the run line's and the gate's numbers (core/tokens.py).
    tokens = run_tokens(tmp_path / "run")
    table = json.loads((tmp_path / "report" / "report.json").read_text())["generations"]
    assert sorted(r["protocol"] for r in table) == ["grpc", "http"]
    assert {r["load_level"] for r in table} == {llm_users}
    assert sum(r["generations"] for r in table) == tokens.generations
    assert sum(r["output_tokens_per_s"] for r in table) == pytest.approx(
        tokens.output_tokens_per_s)
    window = run_window(meta, rows)
    for row in table:
        own = token_numbers(generations[generations["protocol"] == row["protocol"]], window)
        assert row["ttft_p95_ms"] == pytest.approx(own.percentile_ms("ttft", 95))
        assert row["itl_p50_ms"] == pytest.approx(own.percentile_ms("itl", 50))
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Generations (LLM token streams)" in text and "Generations, text_generator" in text


def test_the_ttft_slo_gates_the_run(tmp_path, target):
    met = _run(tmp_path, target, "-u", "2", "-t", "3s", "--osl", "4", "--slo", "ttft=10s",
               name="met")
    assert met.returncode == 0, met.stdout[-2000:] + met.stderr[-2000:]
    assert "TTFT P95 ≤ 10000.00 ms" in met.stdout and "OK" in met.stdout
    breached = _run(tmp_path, target, "-u", "2", "-t", "3s", "--osl", "4",
                    "--slo", "ttft=1us", name="breached")
    assert breached.returncode == 3, breached.stdout[-2000:] + breached.stderr[-2000:]
    assert "BREACH" in breached.stdout


def test_a_stream_aborted_mid_way_keeps_its_tokens_and_its_own_kind(tmp_path, target):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(row) for row in (
        {"text": "ABORT@3 the server drops this stream", "max_tokens": 8},
        {"text": "a whole answer", "max_tokens": 5})) + "\n")
    proc = _run(tmp_path, target, "-u", "2", "-t", "3s", "--user-class", "LlmUser",
                "--prompts", str(prompts))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = records(tmp_path / "run")
    aborted, whole = rows[~rows["ok"]], rows[rows["ok"]]
    assert len(aborted) and len(whole)
    assert (aborted["error_kind"] == "stream_aborted").all()
    assert (aborted["tokens_out"] == 3).all() and (whole["tokens_out"] == 5).all()
    assert aborted["ttft_us"].notna().all() and all(len(g) == 2 for g in aborted["itl_us"])


@pytest.mark.parametrize("extra, says", [
    (("--isl", "0"), "--isl '0': the mean must be >= 1"),
    (("--osl", "ten"), "--osl 'ten': expected N, MEAN,STDDEV or @FILE"),
    (("--prompts", "/nonexistent.jsonl"), "--prompts /nonexistent.jsonl: cannot read it"),
    (("--num-system-prompts", "3"), "--num-system-prompts and --system-prompt-length go "
                                    "together"),
])
def test_bad_generation_options_are_one_line_and_exit_2(tmp_path, target, extra, says):
    proc = _run(tmp_path, target, "-u", "1", "-t", "2s", *extra)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert line.startswith(f"tritonload: error: {says}"), line
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("mode", [("--mode", "async", "--max-in-flight", "4"),
                                  ("--mode", "open", "--rate", "15")])
def test_llm_users_keep_generations_in_flight_in_async_and_open_loops(tmp_path, target, mode):
    proc = _run(tmp_path, target, "-u", "2", "-t", "4s", "--user-class", "LlmUser", "--osl", "6",
                *mode)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = records(tmp_path / "run")
    assert len(rows) >= 20 and rows["ok"].all() and (rows["tokens_out"] == 6).all()
    assert set(rows["mode"]) == {mode[1]}
    # Generations overlapped: one began before the one before it had ended.
    starts = rows.sort_values("start_ns")
    ends = starts["start_ns"] + starts["service_us"] * 1000
    assert (starts["start_ns"].to_numpy()[1:] < ends.to_numpy()[:-1]).any()


def test_generations_from_two_worker_processes_land_in_one_run_directory(tmp_path, target):
    proc = _run(tmp_path, target, "-u", "4", "-t", "5s", "--processes", "2", "--osl", "5")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = records(tmp_path / "run")
    generations = rows[rows["model"] == "text_generator"]
    assert generations["worker"].nunique() == 2  # the gaps' list column crossed Arrow IPC
    assert all(len(g) == 4 for g in generations["itl_us"]) and generations["ok"].all()


def test_prompts_sent_as_token_ids_over_both_protocols(tmp_path, target):
    proc = _run(tmp_path, target, "-u", "2", "-t", "4s", "--token-ids", "--isl", "30",
                "--osl", "6", "--user-class", "LlmUser", "--user-class", "HttpLlmUser")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    generations = records(tmp_path / "run")
    assert set(generations["protocol"]) == {"grpc", "http"}  # input_ids as a list in JSON
    assert generations["ok"].all() and len(generations) >= 10
    assert (generations["tokens_in"] == 30).all() and (generations["tokens_out"] == 6).all()
    assert run_json(tmp_path / "run")["generation"]["token_ids"] is True
