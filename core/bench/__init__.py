"""Benchmarks: each prints numbers beside a reference timing measured in the same run (python -m core bench ...)."""
