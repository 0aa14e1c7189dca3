"""The embedded Triton server and its demo model fleet."""

from tritonload.server.fleet import ModelSpec, TensorSpec, demo_fleet
from tritonload.server.launcher import EmbeddedTriton, Ports

__all__ = ["EmbeddedTriton", "ModelSpec", "Ports", "TensorSpec", "demo_fleet"]
