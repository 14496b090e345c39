"""Benchmarks: `python -m bench` (or `make bench`); `python -m bench --quick` for a smoke run.

Figures only, no timed assertions. Results: bench/results/latest.json and latest.md (git-ignored).
"""
