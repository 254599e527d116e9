"""Benchmarks (not part of CI, not installed): run them from the repository root as modules,
e.g. ``python -m bench.rd --model runs/admm-cpu``; see ``bench/README.md``."""
