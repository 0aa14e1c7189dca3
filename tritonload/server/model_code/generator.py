"""Triton Python-backend model for ``text_generator``: a decoupled model that streams tokens.

It stands in for an LLM served by vLLM or TensorRT-LLM, which Triton runs as decoupled models
(``model_transaction_policy { decoupled: true }``): one request, one response per generated
token, then a final flag. It runs inside Triton's Python-backend stub process.

Inputs: the prompt, as ``text_input`` (BYTES [1]) or as token ids, ``input_ids`` (INT64 [-1],
as an engine's raw backend takes them; both are optional inputs and a request sends one), and
``max_tokens`` (INT32 [1]). Each response carries one token: ``text_output`` (BYTES [1], the
token's text followed by a space) and ``token_id`` (INT64 [1]). In a text prompt a token is a
whitespace-separated word, so the prompt's word count is its input sequence length (ISL);
token ids count one each. Tokens are a deterministic function of the prompt and the position
(`demo_functions.generated_token`, shared with tests); ids are read as the text of the ids
joined by spaces (`demo_functions.ids_prompt`), so ``[5, 7]`` generates what ``"5 7"`` does.

Cost model (continuous batching, as an LLM engine schedules on a GPU). One scheduler thread
owns the accelerator; ``execute`` only hands requests to it and returns. Each step is one of:

* a **prefill** of every request that arrived since the last step: it sleeps
  ``prefill_base_us + prefill_per_token_us × (their ISLs summed)`` and emits each one's first
  token, so time to first token grows with the prompt and with the queue of arrivals;
* a **decode** step for every active sequence: it sleeps
  ``step_base_us + step_per_seq_us × active`` and emits one token to each, so inter-token
  latency grows with the sequences in flight.

Measured through `GrpcConnection.stream_call` (tests/engine/test_streaming.py's costs: steps
of 19 ms + 1 ms per active sequence, prefill 2 ms + 200 µs per word): ITL P50 20.7 ms alone,
24.4 ms with 4 sequences and 29.4 ms with 8 (the model says 20, 23 and 27: each response's send
costs the backend about 0.3 ms more); TTFT 5.4 ms for 10 words and 45.9 ms for 210.

Arrivals are served before decoding (vLLM's default, without chunked prefill), so a busy
server stretches the gaps between tokens of the sequences already running. Sleeping leaves
the CPU free, like a GPU kernel.

A request Triton cancels (its client closed the stream or the connection) leaves the batch at
the next step, as vLLM's and TensorRT-LLM's backends drop it: a load generator that stops
must not leave the next run a server still decoding its abandoned streams. Without this, a
capacity probe at 160 generations/s left the next probe's ITL P95 at 376 ms instead of 25 ms.

A prompt that starts with ``ABORT@k`` (k a number) is aborted by the model after ``k`` tokens
with an error response: the stand-in for an engine that drops a stream mid-way.
"""

import json
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils
from demo_functions import MAX_TOKENS_LIMIT, abort_after, generated_token, ids_prompt, token_text


class _Sequence:
    __slots__ = ("sender", "prompt", "isl", "max_tokens", "emitted", "abort_at")

    def __init__(self, sender, prompt: bytes, max_tokens: int) -> None:
        self.sender = sender
        self.prompt = prompt
        self.isl = len(prompt.split())
        self.max_tokens = max_tokens
        self.emitted = 0
        self.abort_at = abort_after(prompt)


def _cancelled(sender) -> bool:
    """Whether Triton cancelled the request (its client closed the stream or connection)."""
    is_cancelled = getattr(sender, "is_cancelled", None)
    return bool(is_cancelled and is_cancelled())


def _prompt(request) -> bytes:
    """The request's prompt: its ``text_input``, or its ``input_ids`` as their text."""
    text = pb_utils.get_input_tensor_by_name(request, "text_input")
    ids = pb_utils.get_input_tensor_by_name(request, "input_ids")
    if (text is None) == (ids is None):
        raise ValueError("send the prompt as text_input or as input_ids (one of them)")
    if ids is not None:
        return ids_prompt(ids.as_numpy().reshape(-1))
    prompt = text.as_numpy().reshape(-1)[0]
    return prompt.encode() if isinstance(prompt, str) else bytes(prompt)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        us = {k: int(params.get(k, 0)) / 1e6 for k in (
            "prefill_base_us", "prefill_per_token_us", "step_base_us", "step_per_seq_us")}
        self.prefill_base_s = us["prefill_base_us"]
        self.prefill_per_token_s = us["prefill_per_token_us"]
        self.step_base_s = us["step_base_us"]
        self.step_per_seq_s = us["step_per_seq_us"]
        self.cond = threading.Condition()
        self.arrived: list[_Sequence] = []
        self.active: list[_Sequence] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._schedule, daemon=True)
        self.thread.start()

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                prompt = _prompt(request)
                max_tokens = int(pb_utils.get_input_tensor_by_name(
                    request, "max_tokens").as_numpy().reshape(-1)[0])
                if not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
                    raise ValueError(f"max_tokens must be in 1..{MAX_TOKENS_LIMIT}, "
                                     f"got {max_tokens}")
            except Exception as exc:  # a bad request must not take the model down
                self._fail(sender, str(exc))
                continue
            with self.cond:
                self.arrived.append(_Sequence(sender, prompt, max_tokens))
                self.cond.notify()
        return None

    def finalize(self):
        with self.cond:
            self.stopping = True
            self.cond.notify()
        self.thread.join(timeout=5)

    def _schedule(self):
        while True:
            with self.cond:
                while not (self.arrived or self.active or self.stopping):
                    self.cond.wait()
                if self.stopping:
                    return
                arrived, self.arrived = self.arrived, []
            if arrived:
                time.sleep(self.prefill_base_s
                           + self.prefill_per_token_s * sum(s.isl for s in arrived))
                stepped = arrived
                self.active.extend(arrived)
            else:
                time.sleep(self.step_base_s + self.step_per_seq_s * len(self.active))
                stepped = self.active
            for seq in stepped:
                self._emit(seq)
            self.active = [s for s in self.active if s.sender is not None]

    def _emit(self, seq: _Sequence) -> None:
        if _cancelled(seq.sender):  # the client went away: free its slot, as engines do
            self._fail(seq.sender, "generation cancelled by the client")
            seq.sender = None
            return
        if seq.abort_at is not None and seq.emitted >= seq.abort_at:
            self._fail(seq.sender, f"generation aborted after {seq.emitted} tokens")
            seq.sender = None
            return
        token = generated_token(seq.prompt, seq.emitted)
        seq.emitted += 1
        done = seq.emitted >= seq.max_tokens
        response = pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("text_output", np.array([token_text(token)], dtype=np.object_)),
            pb_utils.Tensor("token_id", np.array([token], dtype=np.int64))])
        flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if done else 0
        try:
            seq.sender.send(response, flags=flags)
        except Exception:  # the client went away: the sequence ends here
            done = True
        if done:
            seq.sender = None

    @staticmethod
    def _fail(sender, message: str) -> None:
        try:
            sender.send(pb_utils.InferenceResponse(output_tensors=[],
                                                   error=pb_utils.TritonError(message)),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception:  # the client went away
            pass
