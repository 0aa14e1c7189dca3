"""The user classes a locustfile subclasses (the public path since the first release).

They live in `tritonload.load.users`; this module keeps ``from tritonload.users import ...``
working for existing locustfiles.
"""

from tritonload.load.llm import TritonHttpLLMUser, TritonLLMUser
from tritonload.load.users import TritonGrpcUser, TritonHttpUser, TritonUser

__all__ = ["TritonGrpcUser", "TritonHttpLLMUser", "TritonHttpUser", "TritonLLMUser",
           "TritonUser"]
