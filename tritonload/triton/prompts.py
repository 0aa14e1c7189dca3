"""Prompts for generative (decoupled) models: sequence lengths, a system-prompt pool, datasets.

An LLM load test is shaped by how long the prompts are (input sequence length, ISL), how many
tokens each asks for (output sequence length, OSL), and how much of the prompt is shared (a
pool of system prompts, which a server's prefix cache can reuse): GenAI-Perf's
``--synthetic-input-tokens-mean/-stddev``, ``--output-tokens-mean/-stddev``,
``--num-prefix-prompts`` and ``--prefix-prompt-length``. Here a token is a whitespace-separated
word: the demo ``text_generator`` counts its input that way, and no tokenizer is downloaded.

Requests follow the Triton convention of the TensorRT-LLM and vLLM backends' ensembles: a
BYTES ``text_input`` and an integer ``max_tokens``. A prompt can be token ids instead, an
integer ``input_ids`` [-1] as an engine's raw backend takes them (``--token-ids``, a
``--prompts`` file's ``"input_ids"``, or a model that takes no ``text_input``); synthetic ids
are drawn from a 32,000-id vocabulary, and each id is one input token.

A pool of `POOL_SIZE` requests is drawn once, seeded, at pre-flight, and the users cycle
through it (prebuilt like every payload), so a run's lengths follow the distributions without
any drawing on the hot path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonload.core.errors import UsageError
from tritonload.triton.payloads import ModelInfo, Payload

#: Requests drawn per generative model (the users cycle through them).
POOL_SIZE = 256
PROMPT_INPUT, IDS_INPUT, MAX_TOKENS_INPUT = "text_input", "input_ids", "max_tokens"
#: Synthetic token ids are drawn below this (a Llama-sized vocabulary).
VOCABULARY = 32000


@dataclass(frozen=True)
class Lengths:
    """A sequence-length distribution: fixed, normal (mean, stddev), or a file's values."""

    mean: float
    stddev: float = 0.0
    values: tuple[int, ...] = ()  # from a file: drawn uniformly

    @classmethod
    def parse(cls, text: str, flag: str) -> Lengths:
        """``N``, ``MEAN,STDDEV`` or ``@FILE`` (one length per line); one line on error."""
        text = str(text).strip()
        if text.startswith("@"):
            path = Path(text[1:])
            try:
                values = tuple(int(v) for v in path.read_text().split())
            except OSError as exc:
                raise UsageError(f"{flag} {text}: cannot read {path}: {exc.strerror}") from None
            except ValueError:
                raise UsageError(f"{flag} {text}: {path} must hold whole numbers, one per "
                                 "line") from None
            if not values or min(values) < 1:
                raise UsageError(f"{flag} {text}: {path} needs lengths >= 1")
            return cls(float(np.mean(values)), float(np.std(values)), values)
        mean, _, stddev = text.partition(",")
        try:
            lengths = cls(float(mean), float(stddev) if stddev else 0.0)
        except ValueError:
            raise UsageError(f"{flag} {text!r}: expected N, MEAN,STDDEV or @FILE") from None
        if not lengths.mean >= 1 or not lengths.stddev >= 0:
            raise UsageError(f"{flag} {text!r}: the mean must be >= 1 and the stddev >= 0")
        return lengths

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` lengths (whole numbers, at least 1)."""
        if self.values:
            return rng.choice(np.array(self.values), size=count)
        drawn = rng.normal(self.mean, self.stddev, count) if self.stddev else np.full(
            count, self.mean)
        return np.maximum(1, np.rint(drawn)).astype(np.int64)

    def describe(self) -> str:
        """How run.json records it."""
        if self.values:
            return f"{len(self.values)} values from a file, mean {self.mean:g}"
        return f"{self.mean:g}" + (f" ± {self.stddev:g}" if self.stddev else "")


@dataclass(frozen=True)
class PromptSpec:
    """How a run's prompts are made (``--isl``, ``--osl``, system prompts, ``--prompts``)."""

    isl: Lengths = Lengths(128)
    osl: Lengths = Lengths(64)
    system_prompts: int = 0
    system_prompt_length: int = 0
    dataset: str | None = None  # a JSONL file of {"text": ...} (and "max_tokens")
    token_ids: bool = False  # prompts as ``input_ids`` (token ids), not text

    def __post_init__(self) -> None:
        if self.system_prompts < 0 or self.system_prompt_length < 0:
            raise UsageError("--num-system-prompts and --system-prompt-length must be >= 0")
        if bool(self.system_prompts) != bool(self.system_prompt_length):
            raise UsageError("--num-system-prompts and --system-prompt-length go together")

    def record(self) -> dict:
        """run.json's ``generation``."""
        return {"isl": self.isl.describe(), "osl": self.osl.describe(),
                "system_prompts": self.system_prompts,
                "system_prompt_length": self.system_prompt_length, "dataset": self.dataset,
                "token_ids": self.token_ids}


def check_generative(info: ModelInfo, token_ids: bool = False) -> bool:
    """Refuse, in one line, a model the LLM users cannot prompt; True to send token ids.

    The prompt goes as a BYTES ``text_input``, or as an integer ``input_ids`` when
    ``token_ids`` asks for it or the model takes no ``text_input``; ``max_tokens`` is an
    integer. A model may take both prompt inputs (optional, one per request).
    """
    inputs = {t.name: t for t in info.inputs}
    if not info.decoupled:
        raise UsageError(f"{info.name} is not a decoupled (streaming) model: the LLM users "
                         "stream tokens from decoupled models only")
    text, ids, limit = (inputs.get(n) for n in (PROMPT_INPUT, IDS_INPUT, MAX_TOKENS_INPUT))
    have = ", ".join(f"{t.name} {t.datatype}" for t in info.inputs)
    uses_ids = token_ids or (text is None and ids is not None)
    prompt_ok = (ids is not None and ids.datatype.startswith(("INT", "UINT"))) if uses_ids \
        else (text is not None and text.datatype == "BYTES")
    if not prompt_ok or limit is None or not limit.datatype.startswith(("INT", "UINT")):
        wanted = f"an integer {IDS_INPUT!r}" if uses_ids else f"a BYTES {PROMPT_INPUT!r}"
        raise UsageError(f"{info.name}: the LLM users send {wanted} and an integer "
                         f"{MAX_TOKENS_INPUT!r}; it takes {have}")
    extra = set(inputs) - {PROMPT_INPUT, IDS_INPUT, MAX_TOKENS_INPUT}
    if extra:
        raise UsageError(f"{info.name}: the LLM users send a prompt and "
                         f"{MAX_TOKENS_INPUT!r} only; it also wants {sorted(extra)[0]!r}")
    return uses_ids


def prompt_payload(info: ModelInfo, spec: PromptSpec, seed: int = 0,
                   count: int = POOL_SIZE) -> Payload:
    """`count` generation requests for ``info``'s model, drawn from ``spec`` (seeded)."""
    uses_ids = check_generative(info, spec.token_ids)
    rng = np.random.default_rng(seed)
    osl = spec.osl.draw(rng, count)
    if spec.dataset:
        prompts, asked = _dataset(spec.dataset, count)
        osl = np.where(asked > 0, asked, osl)
    else:
        make = _ids if uses_ids else _words
        prefixes = [make(rng, spec.system_prompt_length, "s")
                    for _ in range(spec.system_prompts)]
        prompts = []
        for i, length in enumerate(spec.isl.draw(rng, count)):
            own = make(rng, int(length), "w")
            prefix = prefixes[i % len(prefixes)] if prefixes else None
            prompts.append(own if prefix is None else
                           prefix + own if uses_ids else f"{prefix} {own}")
    limit = next(t for t in info.inputs if t.name == MAX_TOKENS_INPUT)
    shape = (1, 1) if info.max_batch_size > 0 else (1,)
    entries = tuple({
        **_prompt_tensor(info, prompt, uses_ids),
        MAX_TOKENS_INPUT: np.array([int(n)], dtype=limit.numpy_dtype).reshape(shape),
    } for prompt, n in zip(prompts, osl, strict=True))
    return Payload(info.name, entries, info.outputs, f"prompts:{spec.dataset or 'synthetic'}")


def _prompt_tensor(info: ModelInfo, prompt: str | list[int], uses_ids: bool) -> dict:
    """One request's prompt input: ``text_input`` for text, ``input_ids`` for token ids."""
    if isinstance(prompt, str) and uses_ids:
        raise UsageError(f"{info.name}: token ids asked for (--token-ids, or a model without "
                         f"{PROMPT_INPUT!r}), but a --prompts line has text, and no tokenizer "
                         "is used here: give that file \"input_ids\"")
    if isinstance(prompt, str):
        batch = (1, 1) if info.max_batch_size > 0 else (1,)
        return {PROMPT_INPUT: np.array([prompt.encode()], dtype=object).reshape(batch)}
    ids = next((t for t in info.inputs if t.name == IDS_INPUT), None)
    if ids is None or not ids.datatype.startswith(("INT", "UINT")):
        raise UsageError(f"{info.name}: a --prompts line has \"input_ids\", and the model "
                         f"takes no integer {IDS_INPUT!r}")
    array = np.array(prompt, dtype=ids.numpy_dtype)
    return {IDS_INPUT: array[np.newaxis] if info.max_batch_size > 0 else array}


def prompt_tokens(entry: dict) -> int:
    """The input sequence length of one request (its prompt's words, or its token ids)."""
    if IDS_INPUT in entry:
        return int(entry[IDS_INPUT].size)
    prompt = entry[PROMPT_INPUT].reshape(-1)[0]
    return len(prompt.split())


def generate_json(entry: dict) -> dict:
    """A request entry as the generate extension's JSON body, ``{"text_input": "...", …}``.

    One value per input: a string for BYTES, a number otherwise; token ids as a list.
    """
    out = {}
    for name, array in entry.items():
        values = np.asarray(array).reshape(-1)
        if name == IDS_INPUT:
            out[name] = values.tolist()
            continue
        value = values[0]
        out[name] = value.decode(errors="replace") if isinstance(value, bytes) else value.item()
    return out


def _words(rng: np.random.Generator, n: int, prefix: str) -> str:
    return " ".join(f"{prefix}{v}" for v in rng.integers(0, 10000, n))


def _ids(rng: np.random.Generator, n: int, _: str) -> list[int]:
    return rng.integers(0, VOCABULARY, n).tolist()


def _dataset(path: str, count: int) -> tuple[list[str | list[int]], np.ndarray]:
    """Prompts (and asked lengths, 0 = draw) from a JSONL file, cycled to ``count``.

    A line's prompt is its ``"text"`` (or ``"text_input"``), or its ``"input_ids"``.
    """
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise UsageError(f"--prompts {path}: cannot read it: {exc.strerror}") from None
    prompts, asked = [], []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            if IDS_INPUT in row:
                text = [int(i) for i in row[IDS_INPUT]]
            else:
                text = row["text"] if "text" in row else row[PROMPT_INPUT]
            limit = int(row.get("max_tokens", row.get("output_length", 0)))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(f"--prompts {path}: line {number} is not a JSON object with "
                             "\"text\" or \"input_ids\" (and optionally \"max_tokens\")"
                             ) from None
        if isinstance(text, list):
            if not text or limit < 0:
                raise UsageError(f"--prompts {path}: line {number} needs a non-empty "
                                 "\"input_ids\" and a \"max_tokens\" >= 0")
        elif not isinstance(text, str) or not text.strip() or limit < 0:
            raise UsageError(f"--prompts {path}: line {number} needs a non-empty \"text\" and "
                             "a \"max_tokens\" >= 0")
        prompts.append(text)
        asked.append(limit)
    if not prompts:
        raise UsageError(f"--prompts {path}: no prompts in it")
    return [prompts[i % len(prompts)] for i in range(count)], np.array(
        [asked[i % len(asked)] for i in range(count)])
