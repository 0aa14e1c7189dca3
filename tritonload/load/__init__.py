"""Everything inside the Locust process: session, users, recorder, samplers, arrivals.

Locust is imported here and in the layers above, never below.
"""
