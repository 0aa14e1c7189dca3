"""Analysis of tritonload run directories: pure metrics, comparisons and reports."""
