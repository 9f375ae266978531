"""Benchmarks: `python -m zoology.bench NAME [args]` runs `zoology.bench.NAME.main(args)`."""
