"""Benchmarks: each module is one job with one entry point (`python -m bench.<name>`)."""
