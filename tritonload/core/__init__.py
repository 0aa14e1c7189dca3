"""The bottom layer: errors, configuration, mix, SLOs, run-directory schema, run numbers.

Imports nothing else of tritonload.
"""
