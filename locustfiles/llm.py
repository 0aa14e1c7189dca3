"""Token streams from the demo's ``text_generator`` (an LLM stand-in), beside classic traffic.

The LLM users stream generations over gRPC (ModelStreamInfer) and HTTP (generate_stream);
their prompts follow ``--isl`` / ``--osl`` (words and tokens; system prompts with
``--num-system-prompts``, a dataset with ``--prompts``). The classic user sends recommender
requests at the same time, so a run shows how the two kinds of traffic share the server.
The records carry TTFT, the inter-token gaps and token counts.

    tritonload run llm -u 8 -t 30s --isl 200,40 --osl 64
    tritonload run llm -u 4 -t 30s --user-class LlmUser   # gRPC generations alone
"""

from locust import events

from tritonload.session import install
from tritonload.users import TritonGrpcUser, TritonHttpLLMUser, TritonLLMUser

install(events)


class LlmUser(TritonLLMUser):
    mix = {"text_generator": 1}
    weight = 3


class HttpLlmUser(TritonHttpLLMUser):
    mix = {"text_generator": 1}
    weight = 1


class ClassicUser(TritonGrpcUser):
    mix = {"recommender": 1}
    weight = 1
