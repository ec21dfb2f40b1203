"""Benchmarks of the runtime and the references (``edge-ad bench``: search_bench.py); results in results/."""
