"""tritonload: load testing for NVIDIA Triton Inference Server, built on Locust."""

import os

# grpc's C core logs a failed TLS handshake at INFO on stderr ("ssl_transport_security.cc
# ... Handshake failed"), beside tritonload's own one line. It reads GRPC_VERBOSITY once, when
# grpc is first imported, so the default is set here, before any of our modules imports it;
# a value the user set wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

__version__ = "0.1.0"
