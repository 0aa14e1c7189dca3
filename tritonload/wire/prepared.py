"""What a transport sends: one request, built once before the load starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Prepared:
    """One prebuilt request: the bytes (or message) the transport sends, and its size."""

    model: str
    request: Any
    bytes_sent: int
