"""Sync and async users side by side on one batching model, over gRPC.

The async users keep 8 requests in flight each; compare the two classes' rows in Locust's
stats, or run it twice with --mode sync / --mode async and compare the run directories.

    locust -f locustfiles/sync_vs_async.py --headless -u 2 -t 30s
"""

from locust import events

from tritonload.session import install
from tritonload.users import TritonGrpcUser

install(events)


class SyncUser(TritonGrpcUser):
    mix = {"recommender": 1}
    mode = "sync"


class AsyncUser(TritonGrpcUser):
    mix = {"recommender": 1}
    mode = "async"
    max_in_flight = 8
