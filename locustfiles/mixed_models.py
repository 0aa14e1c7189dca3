"""The demo models, weighted like production traffic, over both gRPC and HTTP.

``image_pipeline`` is the ensemble (``preprocess`` → ``image_classifier``): its requests
reach image_classifier too, and the report attributes their time to each step.

    locust -f locustfiles/mixed_models.py                       # web UI, embedded server
    locust -f locustfiles/mixed_models.py --headless -u 16 -t 60s --host localhost
"""

from locust import events

from tritonload.session import install
from tritonload.users import TritonGrpcUser, TritonHttpUser

install(events)

MIX = {"text_classifier": 5, "image_classifier": 1, "image_pipeline": 1, "recommender": 3}


class GrpcMixedModels(TritonGrpcUser):
    mix = MIX


class HttpMixedModels(TritonHttpUser):
    mix = MIX
