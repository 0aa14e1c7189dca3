"""The embedded Triton server and its demo model fleet."""

from tritonload.server.fleet import ModelSpec, TensorSpec, demo_fleet
from tritonload.server.launcher import AuthRestriction, EmbeddedTriton, Ports

__all__ = ["AuthRestriction", "EmbeddedTriton", "ModelSpec", "Ports", "TensorSpec", "demo_fleet"]
