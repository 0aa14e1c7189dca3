"""The embedded Triton server and its demo model fleet."""

from tritonload.server.fleet import ModelSpec, TensorSpec, demo_fleet
from tritonload.server.launcher import AuthRestriction, EmbeddedTriton, GrpcTls, Ports

__all__ = ["AuthRestriction", "EmbeddedTriton", "GrpcTls", "ModelSpec", "Ports", "TensorSpec",
           "demo_fleet"]
