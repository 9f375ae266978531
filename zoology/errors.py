"""User errors, and how every command-line entry point shows them.

A `UserError` is a mistake in what the user asked for (a config field, a file, a flag): the CLIs
print its message on stderr as `error: <message>` and exit with code 2, without a traceback.
`--debug` on any CLI (or ZOOLOGY_DEBUG=1 in the environment) shows the traceback instead. Any other
exception is a fault in our code and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

USER_ERROR_EXIT = 2


class UserError(Exception):
    """A mistake in the user's input; its message names the file or field and what is allowed."""


def debugging() -> bool:
    """True when tracebacks were asked for: `--debug` on the command line or ZOOLOGY_DEBUG set."""
    return "--debug" in sys.argv or os.environ.get("ZOOLOGY_DEBUG", "") not in ("", "0")


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
