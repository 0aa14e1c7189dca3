"""Locust users for Triton: one module per protocol."""

from tritonload.users.base import TritonUser
from tritonload.users.grpc import TritonGrpcUser
from tritonload.users.http import TritonHttpUser

__all__ = ["TritonGrpcUser", "TritonHttpUser", "TritonUser"]
