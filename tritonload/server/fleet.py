"""The demo model fleet: specs, overrides, and their rendering as Triton ``config.pbtxt``.

The fleet mirrors a multi-model production deployment (NLP + CV + recommender + a ranker with
a huge output). Every batching model has a ``<name>_nobatch`` twin with the same tensors and
no dynamic batching, so that one run can compare batching on vs off. ``image_pipeline`` is an
ensemble, the shape production CV serving takes: ``preprocess`` (camera-layout UINT8 pixels
to normalised FP32 planes, 150 KB in, 600 KB out) feeding ``image_classifier``, so that a
run can attribute an ensemble's time to its steps.

Cost model (see docs/ARCHITECTURE.md): one *execution* of a model (one batch) sleeps
``cost_base_us + cost_per_item_us * batch_size``. Sleeping releases the CPU the way a GPU
kernel does, and because the base cost is shared by the whole batch, dynamic batching really
raises throughput.

The per-item costs put every demo model's knee (the highest rate whose P95 stays within
50 ms) where the simulated accelerator sets it, below ~2,000 req/s, so that the load
generator sharing this 2-core machine stays far from a full core. Measured over gRPC, open
loop: text_classifier ~1,000–1,600 req/s, recommender ~1,600–2,200, image_classifier
~200–800; the _nobatch twins ~250–400, ~550+ and ~100. With the earlier 250 µs and 20 µs
per item, text_classifier and recommender still held P95 under 50 ms at 3,200 req/s, and
recommender's knee sat near 7,000 req/s, where the host's CPUs, not the model, set it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tritonload.core.errors import UsageError
from tritonload.server.model_code.demo_functions import RANKER_ITEMS, WIDE_RANKER_ROWS

NOBATCH_SUFFIX = "_nobatch"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: name, Triton datatype, dims without the batch dim."""

    name: str
    datatype: str  # Triton's short name: FP32, INT64, BYTES, ...
    dims: tuple[int, ...]
    optional: bool = False  # an input a request may leave out (``optional: true``)


@dataclass(frozen=True)
class Step:
    """One step of an ensemble: a model, and its tensors mapped to the ensemble's.

    ``inputs`` and ``outputs`` are ``(model's tensor, ensemble's tensor)`` pairs.
    """

    model: str
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ModelSpec:
    """A demo model: its tensors, batching settings and simulated accelerator cost.

    With ``steps``, an ensemble (Triton's ``platform: "ensemble"``): no code, no cost of its
    own; its steps' models do the work.
    """

    name: str
    function: str  # which deterministic function model.py computes
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    dynamic_batching: bool = True
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    instances: int = 1
    cost_base_us: int = 1000
    cost_per_item_us: int = 0
    steps: tuple[Step, ...] = ()
    # Decoupled (streaming, one response per token): generator.py's continuous-batching cost.
    decoupled: bool = False
    prefill_base_us: int = 0
    prefill_per_token_us: int = 0
    step_base_us: int = 0
    step_per_seq_us: int = 0

    @property
    def is_ensemble(self) -> bool:
        """Whether Triton runs this model as an ensemble of ``steps``."""
        return bool(self.steps)

    def __post_init__(self) -> None:
        if self.max_batch_size < 0:
            raise UsageError(f"{self.name}: max_batch_size must be >= 0")
        if self.instances < 1:
            raise UsageError(f"{self.name}: instances must be >= 1, got {self.instances}")
        if self.max_queue_delay_us < 0:
            raise UsageError(f"{self.name}: max_queue_delay_us must be >= 0")
        costs = (self.cost_base_us, self.cost_per_item_us, self.prefill_base_us,
                 self.prefill_per_token_us, self.step_base_us, self.step_per_seq_us)
        if min(costs) < 0:
            raise UsageError(f"{self.name}: costs must be >= 0 µs")
        bad = [b for b in self.preferred_batch_sizes if not 0 < b <= self.max_batch_size]
        if bad:
            raise UsageError(
                f"{self.name}: preferred batch sizes {bad} not within 1..{self.max_batch_size}"
            )

    def nobatch_twin(self) -> ModelSpec:
        """The same model with dynamic batching off."""
        return dataclasses.replace(
            self,
            name=self.name + NOBATCH_SUFFIX,
            dynamic_batching=False,
            preferred_batch_sizes=(),
            max_queue_delay_us=0,
        )


def _t(name: str, datatype: str, *dims: int, optional: bool = False) -> TensorSpec:
    return TensorSpec(name, datatype, tuple(dims), optional)


BASE_FLEET: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="text_classifier",
        function="text_classifier",
        inputs=(_t("input_ids", "INT64", -1), _t("attention_mask", "INT64", -1)),
        outputs=(_t("logits", "FP32", 10),),
        max_batch_size=32,
        preferred_batch_sizes=(4, 8, 16, 32),
        max_queue_delay_us=5000,
        instances=2,
        cost_base_us=4000,
        cost_per_item_us=1000,
    ),
    ModelSpec(
        name="image_classifier",
        function="image_classifier",
        inputs=(_t("images", "FP32", 3, 224, 224),),
        outputs=(_t("predictions", "FP32", 1000),),
        max_batch_size=64,
        max_queue_delay_us=2000,
        instances=1,
        cost_base_us=8000,
        cost_per_item_us=500,
    ),
    ModelSpec(
        name="recommender",
        function="recommender",
        inputs=(_t("user_features", "FP32", 64), _t("item_features", "FP32", 64)),
        outputs=(_t("score", "FP32", 1),),
        max_batch_size=128,
        max_queue_delay_us=1000,
        instances=2,
        cost_base_us=2000,
        cost_per_item_us=800,
    ),
    ModelSpec(
        name="wide_ranker",
        function="wide_ranker",
        inputs=(_t("query", "FP32", 64),),
        outputs=(_t("scores", "FP32", WIDE_RANKER_ROWS, RANKER_ITEMS),),
        max_batch_size=4,
        max_queue_delay_us=1000,
        instances=1,
        cost_base_us=2000,
        cost_per_item_us=100,
    ),
    ModelSpec(
        name="narrow_ranker",
        function="narrow_ranker",
        inputs=(_t("query", "FP32", 64),),
        outputs=(_t("scores", "FP32", RANKER_ITEMS),),
        max_batch_size=64,
        max_queue_delay_us=1000,
        instances=1,
        cost_base_us=2000,
        cost_per_item_us=100,
    ),
)

#: An ensemble and the model only it uses; no _nobatch twins (the steps batch on their own).
PIPELINE_FLEET: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="preprocess",
        function="preprocess",
        inputs=(_t("raw_images", "UINT8", 224, 224, 3),),
        outputs=(_t("images", "FP32", 3, 224, 224),),
        max_batch_size=64,
        max_queue_delay_us=1000,
        instances=1,
        cost_base_us=1000,
        cost_per_item_us=300,
    ),
    ModelSpec(
        name="image_pipeline",
        function="ensemble",
        inputs=(_t("raw_images", "UINT8", 224, 224, 3),),
        outputs=(_t("predictions", "FP32", 1000),),
        max_batch_size=64,
        dynamic_batching=False,
        cost_base_us=0,
        steps=(Step("preprocess", (("raw_images", "raw_images"),), (("images", "planes"),)),
               Step("image_classifier", (("images", "planes"),),
                    (("predictions", "predictions"),))),
    ),
)

#: An LLM stand-in: a decoupled model streaming one response per token (generator.py). Its
#: engine batches continuously on its own, so Triton sends it requests one at a time.
GENERATIVE_FLEET: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="text_generator",
        function="generator",
        # A prompt as text or as token ids: each request sends one of them.
        inputs=(_t("text_input", "BYTES", 1, optional=True),
                _t("input_ids", "INT64", -1, optional=True), _t("max_tokens", "INT32", 1)),
        outputs=(_t("text_output", "BYTES", 1), _t("token_id", "INT64", 1)),
        max_batch_size=0,
        dynamic_batching=False,
        instances=1,
        cost_base_us=0,
        decoupled=True,
        prefill_base_us=5000,
        prefill_per_token_us=50,
        step_base_us=15000,
        step_per_seq_us=500,
    ),
)

# Fields a user may override per model, with the parser for each (see `apply_overrides`).
OVERRIDABLE: dict[str, type] = {
    "max_queue_delay_us": int,
    "preferred_batch_sizes": tuple,
    "instances": int,
    "cost_base_us": int,
    "cost_per_item_us": int,
    "max_batch_size": int,
    "prefill_base_us": int,
    "prefill_per_token_us": int,
    "step_base_us": int,
    "step_per_seq_us": int,
}


def demo_fleet(overrides: dict[str, dict[str, object]] | None = None) -> list[ModelSpec]:
    """The full demo fleet (each batching model and its twin), with overrides applied.

    ``overrides`` maps a model name to ``{field: value}``. Overrides of a batching model also
    apply to its ``_nobatch`` twin (except the batching fields, which the twin lacks); a twin
    may be overridden by its own name too.
    """
    overrides = dict(overrides or {})
    fleet: list[ModelSpec] = []
    for base in BASE_FLEET:
        spec = _replace(base, overrides.pop(base.name, {}))
        twin = spec.nobatch_twin()
        twin = _replace(twin, overrides.pop(twin.name, {}))
        fleet += [spec, twin]
    for base in PIPELINE_FLEET + GENERATIVE_FLEET:
        fleet.append(_replace(base, overrides.pop(base.name, {})))
    if overrides:
        known = ", ".join(m.name for m in fleet)
        raise UsageError(f"unknown model {sorted(overrides)[0]!r}; known models: {known}")
    return fleet


def _replace(spec: ModelSpec, changes: dict[str, object]) -> ModelSpec:
    for key in changes:
        if key not in OVERRIDABLE:
            raise UsageError(
                f"{spec.name}: cannot override {key!r}; overridable: {', '.join(OVERRIDABLE)}"
            )
    if spec.is_ensemble and changes:
        raise UsageError(f"{spec.name}: an ensemble has no settings of its own; set its "
                         f"steps' ({', '.join(s.model for s in spec.steps)})")
    generation = {"prefill_base_us", "prefill_per_token_us", "step_base_us", "step_per_seq_us"}
    if not spec.decoupled and generation & set(changes):
        raise UsageError(f"{spec.name}: generation costs apply to a decoupled model "
                         "(text_generator) only")
    if not spec.dynamic_batching and {"max_queue_delay_us", "preferred_batch_sizes"} & set(changes):
        raise UsageError(f"{spec.name}: has no dynamic batching to configure")
    return dataclasses.replace(spec, **changes)


def parse_override(text: str) -> tuple[str, str, object]:
    """Parse ``MODEL.FIELD=VALUE`` (e.g. ``text_classifier.max_queue_delay_us=100``)."""
    target, sep, raw = text.partition("=")
    model, dot, key = target.partition(".")
    if not sep or not dot or not model or not key or not raw:
        raise UsageError(f"bad --set {text!r}: expected MODEL.FIELD=VALUE")
    kind = OVERRIDABLE.get(key)
    if kind is None:
        raise UsageError(f"bad --set {text!r}: {key!r} is not one of {', '.join(OVERRIDABLE)}")
    try:
        value: object = (
            tuple(int(v) for v in raw.split(",") if v) if kind is tuple else int(raw)
        )
    except ValueError:
        raise UsageError(f"bad --set {text!r}: {raw!r} is not a number (list)") from None
    return model, key, value


def overrides_from_strings(items: list[str]) -> dict[str, dict[str, object]]:
    """Group ``MODEL.FIELD=VALUE`` strings into the mapping `demo_fleet` takes."""
    grouped: dict[str, dict[str, object]] = {}
    for item in items:
        model, key, value = parse_override(item)
        grouped.setdefault(model, {})[key] = value
    return grouped


def with_steps(chosen: list[ModelSpec], fleet: list[ModelSpec]) -> list[ModelSpec]:
    """``chosen``, plus the models its ensembles' steps need (in fleet order)."""
    needed = {m.name for m in chosen} | {s.model for m in chosen for s in m.steps}
    return [m for m in fleet if m.name in needed]


def _ensemble_config(spec: ModelSpec, tensors) -> str:
    def pairs(kind: str, mapping: tuple[tuple[str, str], ...]) -> str:
        return " ".join(f'{kind} {{ key: "{k}" value: "{v}" }}' for k, v in mapping)

    steps = ",\n".join(
        f'    {{ model_name: "{s.model}" model_version: -1 {pairs("input_map", s.inputs)} '
        f'{pairs("output_map", s.outputs)} }}' for s in spec.steps)
    return (f'name: "{spec.name}"\nplatform: "ensemble"\nmax_batch_size: {spec.max_batch_size}\n'
            + tensors("input", spec.inputs) + tensors("output", spec.outputs)
            + f"ensemble_scheduling {{\n  step [\n{steps}\n  ]\n}}\n")


# The model config's names for datatypes whose short (KServe) name differs.
_CONFIG_TYPES = {"BYTES": "STRING"}


def render_config(spec: ModelSpec) -> str:
    """The model's ``config.pbtxt`` in Triton's text protobuf format."""

    def tensors(kind: str, specs: tuple[TensorSpec, ...]) -> str:
        rows = [
            f'  {{ name: "{t.name}" data_type: TYPE_{_CONFIG_TYPES.get(t.datatype, t.datatype)} '
            f"dims: [ {', '.join(map(str, t.dims))} ]{' optional: true' if t.optional else ''} }}"
            for t in specs
        ]
        return f"{kind} [\n" + ",\n".join(rows) + "\n]\n"

    if spec.is_ensemble:
        return _ensemble_config(spec, tensors)
    text = (
        f'name: "{spec.name}"\nbackend: "python"\nmax_batch_size: {spec.max_batch_size}\n'
        + tensors("input", spec.inputs)
        + tensors("output", spec.outputs)
        + f"instance_group [ {{ count: {spec.instances} kind: KIND_CPU }} ]\n"
    )
    if spec.decoupled:
        text += "model_transaction_policy { decoupled: true }\n"
    if spec.dynamic_batching:
        preferred = (
            f"  preferred_batch_size: [ {', '.join(map(str, spec.preferred_batch_sizes))} ]\n"
            if spec.preferred_batch_sizes
            else ""
        )
        text += (
            "dynamic_batching {\n"
            + preferred
            + f"  max_queue_delay_microseconds: {spec.max_queue_delay_us}\n}}\n"
        )
    params = {
        "function": spec.function,
        "cost_base_us": spec.cost_base_us,
        "cost_per_item_us": spec.cost_per_item_us,
    }
    if spec.decoupled:
        params = {"function": spec.function, "prefill_base_us": spec.prefill_base_us,
                  "prefill_per_token_us": spec.prefill_per_token_us,
                  "step_base_us": spec.step_base_us, "step_per_seq_us": spec.step_per_seq_us}
    for key, value in params.items():
        text += f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'
    return text


def fleet_table(fleet: list[ModelSpec]) -> list[dict[str, str]]:
    """One dict per model describing what is served, for tables and logs."""
    return [
        {
            "model": m.name,
            "inputs": ", ".join(f"{t.name} {t.datatype}{list(t.dims)}" for t in m.inputs),
            "outputs": ", ".join(f"{t.name} {t.datatype}{list(t.dims)}" for t in m.outputs),
            "max_batch": str(m.max_batch_size),
            "batching": (
                "continuous (its own)" if m.decoupled
                else "ensemble: " + " → ".join(s.model for s in m.steps) if m.is_ensemble
                else f"delay {m.max_queue_delay_us}µs pref {list(m.preferred_batch_sizes) or '-'}"
                if m.dynamic_batching
                else "off"
            ),
            "instances": "-" if m.is_ensemble else str(m.instances),
            "cost": ("its steps'" if m.is_ensemble
                     else f"prefill {m.prefill_base_us}+{m.prefill_per_token_us}×ISL µs, "
                          f"step {m.step_base_us}+{m.step_per_seq_us}×active µs"
                     if m.decoupled
                     else f"{m.cost_base_us}+{m.cost_per_item_us}×b µs"),
        }
        for m in fleet
    ]


# Shapes for the fleet's variable dimensions: a 128-token sequence for the text classifier.
DEMO_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {
    name: {"input_ids": (128,), "attention_mask": (128,)}
    for name in ("text_classifier", "text_classifier" + NOBATCH_SUFFIX)
}
