"""User errors, and how every command-line entry point shows them.

A `UserError` is a mistake in what the user asked for (a config field, a file, a flag): the CLIs
print its message on stderr as `error: <message>` and exit with code 2, without a traceback.
`--debug` on any CLI (or ZOOLOGY_DEBUG=1 in the environment) shows the traceback instead. Any other
exception is a fault in our code and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

USER_ERROR_EXIT = 2

DEBUG_HELP = "show the traceback of an error in the input (also ZOOLOGY_DEBUG=1)"


class UserError(ValueError):
    """A mistake in the user's input; its message names the file or field and what is allowed."""


def debugging() -> bool:
    """True when tracebacks were asked for: `--debug` on the command line or ZOOLOGY_DEBUG set."""
    return "--debug" in sys.argv or os.environ.get("ZOOLOGY_DEBUG", "") not in ("", "0")


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """List `--debug` in a CLI's help (cli_main takes it off sys.argv before the parser sees it)."""
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)


def warn(message: str) -> None:
    """One warning line on stderr: `warning: <message>`."""
    print(f"warning: {message}", file=sys.stderr)


def cli_main(main: Callable[[], int | None]) -> int:
    """Run a CLI's `main`, turning a UserError into one line on stderr and exit code 2."""
    debug = debugging()
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
    try:
        return main() or 0
    except UserError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT
