"""zoology: synthetic recall benchmarks for efficient sequence mixers."""

__version__ = "0.1.0"
