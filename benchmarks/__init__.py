"""Benchmarks: figures and ratios measured on real lab runs (not timed tests)."""
