"""The bench scenario: one user class per protocol; the mix and mode come from the command line.

`tritonload bench` runs it once per matrix cell, e.g.:

    locust -f locustfiles/bench.py Grpc --headless -u 2 --mode async --max-in-flight 8 \
        --mix text_classifier:5,image_classifier:1,recommender:3 -t 30s
"""

from locust import events

from tritonload.session import install
from tritonload.users import TritonGrpcUser, TritonHttpUser

install(events)

DEMO_MIX = {"text_classifier": 5, "image_classifier": 1, "recommender": 3}


class Grpc(TritonGrpcUser):
    mix = DEMO_MIX


class Http(TritonHttpUser):
    mix = DEMO_MIX
