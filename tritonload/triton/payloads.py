"""Payloads: perf_analyzer ``--input-data`` JSON files, or tensors generated from metadata.

Whatever the source, a payload is validated against the model's served metadata before any
load starts, and becomes a tuple of entries (input name → numpy array, batch dim included)
that the users turn once into protocol-specific prebuilt requests.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.utils import triton_to_np_dtype

from tritonload.core.errors import UsageError


@dataclass(frozen=True)
class TensorInfo:
    """A served input: name, Triton datatype and shape *without* the batch dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype of the tensor (object for BYTES)."""
        return np.dtype(triton_to_np_dtype(self.datatype))


@dataclass(frozen=True)
class ModelInfo:
    """What a payload must match: inputs, output names and whether a batch dim is expected."""

    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[str, ...]
    max_batch_size: int

    @classmethod
    def from_served(cls, metadata: Mapping[str, Any], config: Mapping[str, Any]) -> ModelInfo:
        """Build from `TritonAdmin.metadata()` and `.config()` answers."""
        batching = int(config.get("max_batch_size", 0)) > 0

        def tensor(entry: Mapping[str, Any]) -> TensorInfo:
            shape = tuple(int(d) for d in entry["shape"])
            return TensorInfo(entry["name"], entry["datatype"], shape[1:] if batching else shape)

        return cls(
            name=metadata["name"],
            inputs=tuple(tensor(t) for t in metadata.get("inputs", [])),
            outputs=tuple(t["name"] for t in metadata.get("outputs", [])),
            max_batch_size=int(config.get("max_batch_size", 0)),
        )


@dataclass(frozen=True)
class Payload:
    """Validated request data for one model: entries are used round-robin."""

    model: str
    entries: tuple[Mapping[str, np.ndarray], ...]
    outputs: tuple[str, ...]
    source: str

    def bytes_per_entry(self) -> list[int]:
        """Tensor bytes each entry sends."""
        return [sum(_nbytes(a) for a in entry.values()) for entry in self.entries]


def _nbytes(array: np.ndarray) -> int:
    if array.dtype.kind == "O":
        return sum(4 + len(_as_bytes(v)) for v in array.reshape(-1))
    return int(array.nbytes)


def _as_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


# -- shapes --------------------------------------------------------------------------------

def parse_shape_override(text: str) -> tuple[str, str, tuple[int, ...]]:
    """Parse ``MODEL.INPUT=D1,D2`` (dims without the batch dim): text_classifier.input_ids=128."""
    target, sep, dims = text.partition("=")
    model, dot, name = target.partition(".")
    try:
        shape = tuple(int(d) for d in dims.split(",") if d.strip())
    except ValueError:
        shape = ()
    if not sep or not dot or not model or not name or not shape or min(shape) < 1:
        raise UsageError(f"bad --shape {text!r}: expected MODEL.INPUT=D1[,D2...] with dims >= 1")
    return model, name, shape


def resolve_shape(info: ModelInfo, tensor: TensorInfo, override: tuple[int, ...] | None) -> tuple:
    """The concrete shape to generate: the served shape with variable dims filled in."""
    if override is not None:
        _check_shape(info, tensor, override)
        return override
    if any(d < 0 for d in tensor.shape):
        raise UsageError(
            f"{info.name}: input {tensor.name!r} has variable shape {list(tensor.shape)}; "
            f"give one with --shape {info.name}.{tensor.name}=D1[,D2...]"
        )
    return tensor.shape


def _check_shape(info: ModelInfo, tensor: TensorInfo, shape: tuple[int, ...]) -> None:
    expected = list(tensor.shape)
    ok = len(shape) == len(expected) and all(
        e < 0 or e == s for e, s in zip(expected, shape, strict=True))
    if not ok:
        raise UsageError(
            f"{info.name}: input {tensor.name!r} shape mismatch: expected {expected} "
            f"(without batch dim), got {list(shape)}"
        )


# -- generated payloads --------------------------------------------------------------------

def generate_payload(
    info: ModelInfo,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    fill: str = "random",
    count: int = 8,
    seed: int = 0,
) -> Payload:
    """Make ``count`` entries from the metadata: random values (seeded) or zeros."""
    if fill not in ("random", "zeros"):
        raise UsageError(f"bad fill {fill!r}: expected random or zeros")
    if count < 1:
        raise UsageError("payload entry count must be >= 1")
    shapes = shapes or {}
    unknown = set(shapes) - {t.name for t in info.inputs}
    if unknown:
        raise UsageError(f"{info.name}: --shape names unknown input {sorted(unknown)[0]!r}")
    rng = np.random.default_rng(seed)
    concrete = {t.name: resolve_shape(info, t, shapes.get(t.name)) for t in info.inputs}
    entries = []
    for _ in range(count):
        entry = {}
        for tensor in info.inputs:
            shape = concrete[tensor.name]
            entry[tensor.name] = _with_batch(info, _generate(tensor, shape, fill, rng))
        entries.append(entry)
    return Payload(info.name, tuple(entries), info.outputs, f"generated:{fill}")


def _generate(tensor: TensorInfo, shape: tuple, fill: str, rng: np.random.Generator) -> np.ndarray:
    dtype = tensor.numpy_dtype
    if dtype.kind == "O":
        words = ["tritonload"] * int(np.prod(shape)) if fill == "zeros" else [
            f"w{v}" for v in rng.integers(0, 1000, int(np.prod(shape)))]
        return np.array([w.encode() for w in words], dtype=object).reshape(shape)
    if fill == "zeros":
        return np.zeros(shape, dtype=dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        high = min(np.iinfo(dtype).max, 30000)  # token-id-like range
        low = 0 if np.iinfo(dtype).min == 0 else 1
        return rng.integers(low, high, shape).astype(dtype)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def _with_batch(info: ModelInfo, array: np.ndarray) -> np.ndarray:
    return array[np.newaxis, ...] if info.max_batch_size > 0 else array


# -- perf_analyzer input-data files --------------------------------------------------------

def load_payload_file(path: str | Path, info: ModelInfo) -> Payload:
    """Read a perf_analyzer ``--input-data`` JSON file and validate it against the model."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"payload file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"payload file {path} is not valid JSON: {exc}") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list) or not data:
        raise UsageError(f"payload file {path}: expected {{\"data\": [ ...entries... ]}}")
    # perf_analyzer allows a list of streams (lists of entries); walk them in order.
    flat = [e for item in data for e in (item if isinstance(item, list) else [item])]
    entries = tuple(_parse_entry(info, path, i, entry) for i, entry in enumerate(flat))
    return Payload(info.name, entries, info.outputs, str(path))


def _parse_entry(info: ModelInfo, path: Path, index: int, entry: object) -> dict[str, np.ndarray]:
    where = f"payload file {path}, entry {index}"
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: expected an object of input name → data")
    expected = {t.name for t in info.inputs}
    unknown = set(entry) - expected
    if unknown:
        raise UsageError(f"{where}: model {info.name} has no input {sorted(unknown)[0]!r} "
                         f"(inputs: {', '.join(sorted(expected))})")
    missing = expected - set(entry)
    if missing:
        raise UsageError(f"{where}: model {info.name} input {sorted(missing)[0]!r} is missing")
    parsed = {}
    for tensor in info.inputs:
        array = _parse_value(info, tensor, entry[tensor.name], f"{where}, input {tensor.name!r}")
        parsed[tensor.name] = _with_batch(info, array)
    return parsed


def _parse_value(info: ModelInfo, tensor: TensorInfo, value: object, where: str) -> np.ndarray:
    shape: tuple[int, ...] | None = None
    if isinstance(value, dict) and "content" in value:
        if "shape" in value:
            try:
                shape = tuple(int(d) for d in value["shape"])
            except (TypeError, ValueError):
                raise UsageError(f"{where}: shape must be a list of integers") from None
        value = value["content"]
    if shape is None:
        if any(d < 0 for d in tensor.shape):
            raise UsageError(f"{where}: input has variable shape {list(tensor.shape)}; the entry "
                             "needs {\"content\": [...], \"shape\": [...]}")
        shape = tensor.shape
    _check_shape(info, tensor, shape)
    dtype = tensor.numpy_dtype
    count = int(np.prod(shape)) if shape else 1
    if isinstance(value, dict) and "b64" in value:
        flat = _decode_b64(value["b64"], dtype, where)
    elif isinstance(value, list):
        flat = _decode_list(value, dtype, where)
    else:
        raise UsageError(f"{where}: expected a list of values, {{\"b64\": ...}} or "
                         "{\"content\": ..., \"shape\": ...}")
    if flat.size != count:
        raise UsageError(f"{where}: {flat.size} values do not fill shape {list(shape)} "
                         f"({count} values)")
    return flat.reshape(shape)


def _decode_list(values: list, dtype: np.dtype, where: str) -> np.ndarray:
    flat = np.array(values, dtype=object).reshape(-1)
    if dtype.kind == "O":
        return np.array([_as_bytes(v) for v in flat], dtype=object)
    try:
        return flat.astype(dtype)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: values are not {dtype.name}") from None


def _decode_b64(text: object, dtype: np.dtype, where: str) -> np.ndarray:
    try:
        raw = base64.b64decode(str(text), validate=True)
    except ValueError:
        raise UsageError(f"{where}: b64 is not valid base64") from None
    if dtype.kind != "O":
        if len(raw) % dtype.itemsize:
            raise UsageError(f"{where}: {len(raw)} bytes is not a whole number of {dtype.name}")
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    items, offset = [], 0
    while offset < len(raw):  # BYTES: 4-byte little-endian length before each element
        if offset + 4 > len(raw):
            raise UsageError(f"{where}: truncated BYTES element length")
        (length,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4: offset + 4 + length])
        offset += 4 + length
    return np.array(items, dtype=object)


def payload_document(payload: Payload, info: ModelInfo, b64: bool = False) -> dict[str, Any]:
    """A payload as perf_analyzer ``--input-data`` JSON (entries without the batch dim).

    Variable-shape inputs carry ``{"content", "shape"}``; ``b64`` stores tensors as
    little-endian raw bytes, far smaller for large images.
    """
    variable = {t.name for t in info.inputs if any(d < 0 for d in t.shape)}
    data = []
    for entry in payload.entries:
        document = {}
        for name, array in entry.items():
            item = array[0] if info.max_batch_size > 0 else array
            if b64 and item.dtype != object:
                value: Any = {"b64": base64.b64encode(
                    item.astype(item.dtype.newbyteorder("<")).tobytes()).decode()}
            elif item.dtype == object:
                value = [_as_bytes(v).decode(errors="replace") for v in item.reshape(-1)]
            else:
                value = item.reshape(-1).tolist()
            if name in variable:
                value = {"content": value, "shape": list(item.shape)}
            document[name] = value
        data.append(document)
    return {"data": data}
