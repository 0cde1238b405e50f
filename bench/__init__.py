"""Benchmark harness: `python -m bench` (= `make bench`) prints one table of figures.

See bench/README.md for what each figure measures and how."""
