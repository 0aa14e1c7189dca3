"""Test scenario: one user class per protocol on the recommender; mode comes from --mode."""

from locust import events

from tritonload.session import install
from tritonload.users import TritonGrpcUser, TritonHttpUser

install(events)


class GrpcUser(TritonGrpcUser):
    mix = {"recommender": 1}


class HttpUser(TritonHttpUser):
    mix = {"recommender": 1}
