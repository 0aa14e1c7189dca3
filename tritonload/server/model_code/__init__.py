"""Code that runs inside Triton's Python-backend stub (and the pure functions tests share)."""
