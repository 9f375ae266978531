"""python -m zoology.bench NAME [args…]: NAME is a module of zoology.bench with a main(argv)."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import zoology.bench
from zoology.errors import UserError, cli_main


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(zoology.bench.__path__) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m zoology.bench {{{','.join(available())}}} [args…] [--debug]")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in available():
        raise UserError(f"unknown benchmark {name!r}; available: {', '.join(available())}")
    return importlib.import_module(f"zoology.bench.{name}").main(rest) or 0


if __name__ == "__main__":
    sys.exit(cli_main(lambda: main(sys.argv[1:])))
