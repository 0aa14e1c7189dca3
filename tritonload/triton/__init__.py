"""Triton's control plane (metadata, config, statistics), payloads and the probe."""
