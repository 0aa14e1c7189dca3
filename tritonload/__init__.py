"""tritonload: load testing for NVIDIA Triton Inference Server, built on Locust."""

__version__ = "0.1.0"
