"""vggbench's pytest-benchmark suite (a package so `python -m benchmarks.gate` works from the repo root)."""
