"""Benchmarks (not tests): `python -m bench.run --events N` prints time, throughput and memory per stage.

See docs/benchmark.md.
"""
