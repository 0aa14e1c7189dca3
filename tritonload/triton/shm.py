"""Shared-memory inputs and outputs: regions written once, registered with Triton, released.

Why: a large tensor sent over the wire is copied by the client into the request, by the
kernel through loopback, and by the server out of it; with system shared memory the client
writes each prebuilt input into a region once, before the load, and every request only names
the region (``shared_memory_region``, ``_byte_size``, ``_offset`` parameters, over gRPC and
HTTP alike), which is the transport Triton's guides recommend for large tensors on one host.
Answers can land in shared memory too (``--output-shared-memory-size``): the response then
carries no tensor bytes.

One input region per payload entry holds all of its inputs, 64-byte aligned; one output
region per payload (model) has ``--output-shared-memory-size`` bytes for each requested
output, shared by all its entries and requests in flight: the server overwrites it, and
nobody reads it (the load is measured, not the answers; ``--validate`` refuses shared
outputs). One per entry would have taken 8 × 29 MB of /dev/shm for ``wide_ranker`` alone.
/dev/shm is a tmpfs whose pages are only taken when written, so a region larger than its
free space would be created fine and then kill the writer (SIGBUS, the client's or the
server's) mid-run: the free space is checked before each region is made.

Regions are POSIX shared memory (tritonclient's ``utils.shared_memory``, on Python's
``multiprocessing.shared_memory``), named ``/tritonload_<pid>_<n>``. `SharedRegions.release`
unregisters them from the server (it may be gone: that is logged, not raised) and unlinks
them; `release` runs from the pre-flight's ``close`` at the end of the run, on Ctrl-C too,
and Python's resource tracker unlinks what a killed process left.

CUDA shared memory (``cuda``) stands behind the same interface (`CudaRegions`) and needs a
GPU: without one, it is refused in one line before anything is allocated.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import count
from typing import Any

import numpy as np

from tritonload.core.errors import TritonloadError, UsageError

log = logging.getLogger(__name__)

KINDS = ("none", "system", "cuda")
_ALIGN = 64
_serial = count()


@dataclass(frozen=True)
class Placement:
    """Where one tensor is: a registered region, an offset in it, and its size in bytes."""

    region: str
    offset: int
    byte_size: int


@dataclass(frozen=True)
class EntryPlacement:
    """One payload entry's tensors in shared memory: inputs, and outputs if placed."""

    inputs: Mapping[str, Placement]
    outputs: Mapping[str, Placement]


def tensor_bytes(array: np.ndarray) -> bytes | memoryview:
    """A tensor's bytes as Triton reads them (BYTES tensors length-prefixed)."""
    if array.dtype == object:
        from tritonclient.utils import serialize_byte_tensor

        # A 0-d object array holding the serialized bytes: .item(), not .tobytes() (which
        # gives the object pointer).
        return serialize_byte_tensor(array).item()
    return memoryview(np.ascontiguousarray(array)).cast("B")


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def check_room(byte_size: int, folder: str = "/dev/shm") -> None:
    """Refuse a region the shared-memory filesystem has no room for (see the docstring)."""
    try:
        stat = os.statvfs(folder)
    except OSError:
        return  # no such filesystem here: creating the region will say what is wrong
    free = stat.f_bavail * stat.f_frsize
    if byte_size > free:
        raise UsageError(f"--shared-memory: {folder} has {free / 1e6:.0f} MB free and a "
                         f"{byte_size / 1e6:.0f} MB region is needed (a smaller "
                         "--output-shared-memory-size, or a larger /dev/shm)")


def is_local(host: str) -> bool:
    """Shared memory needs the server on this machine: a loopback target."""
    return host in ("localhost", "::1") or host.startswith("127.")


class SharedRegions:
    """System shared memory of one run: the regions made, filled and registered."""

    kind = "system"

    def __init__(self, admin: Any, output_size: int | None = None) -> None:
        self.admin = admin
        self.output_size = output_size  # bytes per output in shared memory; None: in answers
        self.count = 0  # regions made
        self._unwritten = 0  # bytes of output regions the server has yet to fill
        self._handles: list[tuple[str, Any]] = []  # (registered name, tritonclient handle)

    def _region(self, byte_size: int) -> tuple[str, Any]:
        from tritonclient.utils import shared_memory

        check_room(byte_size + self._unwritten)
        name = f"tritonload_{os.getpid()}_{next(_serial)}"
        try:
            handle = shared_memory.create_shared_memory_region(name, f"/{name}", byte_size,
                                                               create_only=True)
        except Exception as exc:  # SharedMemoryException, OSError (a full /dev/shm)
            raise TritonloadError(f"cannot create a {byte_size}-byte shared-memory region: "
                                  f"{exc.__cause__ or exc}") from None
        self._handles.append((name, handle))
        self.count += 1
        self.admin.register_system_shared_memory(name, f"/{name}", byte_size)
        return name, handle

    def place(self, entries: list[Mapping[str, np.ndarray]], outputs: list[str]
              ) -> list[EntryPlacement]:
        """Write each entry's inputs into a new region; give each an output region if asked."""
        from tritonclient.utils import shared_memory

        placed = []
        outputs_at = self._outputs(outputs)
        for entry in entries:
            blobs = {name: tensor_bytes(array) for name, array in entry.items()}
            offsets, size = {}, 0
            for name, blob in blobs.items():
                offsets[name] = size
                size = _aligned(size + len(blob))
            region, handle = self._region(max(size, _ALIGN))
            inputs = {}
            for name, blob in blobs.items():
                shared_memory.set_shared_memory_region(
                    handle, [np.frombuffer(blob, dtype=np.uint8)], offset=offsets[name])
                inputs[name] = Placement(region, offsets[name], len(blob))
            placed.append(EntryPlacement(inputs, outputs_at))
        return placed

    def _outputs(self, outputs: list[str]) -> dict[str, Placement]:
        size = self.output_size
        if not size or not outputs:
            return {}
        region, _ = self._region(_aligned(size) * len(outputs))
        self._unwritten += _aligned(size) * len(outputs)
        return {name: Placement(region, i * _aligned(size), size)
                for i, name in enumerate(outputs)}

    def release(self) -> None:
        """Unregister every region (the server may be gone) and unlink it. Safe twice."""
        from tritonclient.utils import shared_memory

        handles, self._handles = self._handles, []
        for name, handle in handles:
            try:
                self.admin.unregister_system_shared_memory(name)
            except TritonloadError as exc:
                log.info("shared-memory region %s not unregistered: %s", name, exc)
            try:
                shared_memory.destroy_shared_memory_region(handle)
            except Exception as exc:  # noqa: BLE001 (already unlinked by someone)
                log.info("shared-memory region %s not unlinked: %s", name, exc)
        if handles:
            log.info("released %d shared-memory regions", len(handles))


class CudaRegions(SharedRegions):
    """CUDA shared memory behind the same interface: device buffers Triton maps by handle."""

    kind = "cuda"

    def __init__(self, admin: Any, output_size: int | None = None, device: int = 0) -> None:
        if shutil.which("nvidia-smi") is None:
            raise UsageError("--shared-memory cuda needs a GPU, and this machine has none "
                             "(no nvidia-smi): use --shared-memory system")
        super().__init__(admin, output_size)
        self.device = device

    def _region(self, byte_size: int) -> tuple[str, Any]:  # pragma: no cover (needs a GPU)
        from tritonclient.utils import cuda_shared_memory as cudashm

        name = f"tritonload_{os.getpid()}_{next(_serial)}"
        handle = cudashm.create_shared_memory_region(name, byte_size, self.device)
        self._handles.append((name, handle))
        self.count += 1
        self.admin.register_cuda_shared_memory(name, cudashm.get_raw_handle(handle),
                                               self.device, byte_size)
        return name, handle

    def place(self, entries: list[Mapping[str, np.ndarray]], outputs: list[str]
              ) -> list[EntryPlacement]:  # pragma: no cover
        """Copy each entry's inputs into a device region of its own (one copy, before load)."""
        from tritonclient.utils import cuda_shared_memory as cudashm

        placed = []
        outputs_at = self._outputs(outputs)
        for entry in entries:
            arrays = list(entry.values())
            sizes = [len(tensor_bytes(a)) for a in arrays]
            region, handle = self._region(sum(sizes))
            cudashm.set_shared_memory_region(handle, arrays)
            inputs, offset = {}, 0
            for name, size in zip(entry, sizes, strict=True):
                inputs[name] = Placement(region, offset, size)
                offset += size
            placed.append(EntryPlacement(inputs, outputs_at))
        return placed

    def release(self) -> None:  # pragma: no cover (needs a GPU)
        """Unregister and free every device region."""
        from tritonclient.utils import cuda_shared_memory as cudashm

        handles, self._handles = self._handles, []
        for name, handle in handles:
            try:
                self.admin.unregister_cuda_shared_memory(name)
            except TritonloadError as exc:
                log.info("CUDA shared-memory region %s not unregistered: %s", name, exc)
            cudashm.destroy_shared_memory_region(handle)


def regions_for(kind: str, admin: Any, output_size: int | None = None
                ) -> SharedRegions | None:
    """The regions of ``--shared-memory KIND`` (None for ``none``)."""
    if kind == "none":
        return None
    if kind == "system":
        return SharedRegions(admin, output_size)
    if kind == "cuda":
        return CudaRegions(admin, output_size)
    raise UsageError(f"--shared-memory {kind!r}: choose one of {', '.join(KINDS)}")
