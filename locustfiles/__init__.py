"""The scenarios that ship with tritonload; Locust and ``tritonload run`` load them by path."""
