"""Transports: send prebuilt inference requests on gevent sockets, with no Locust in sight.

A transport has ``prepare(payload) -> [Prepared]`` (build every request once),
``send(prepared) -> bytes received`` (one blocking, greenlet-friendly request that raises on
failure) and ``close()``. Importing this package never imports Locust, so the transports can
be used and tested on their own.
"""
