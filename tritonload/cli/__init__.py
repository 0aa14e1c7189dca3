"""The ``tritonload`` command line, in the parent process.

It never imports Locust (which monkey-patches the process): every load runs as a Locust
child process.
"""
