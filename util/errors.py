"""The one exception type for problems the user can fix (bad file, bad flag, missing data).

Command-line entry points catch :class:`UserError`, print its message on one line and exit with
status 2; anything else is a bug and keeps its traceback.
"""

import sys


class UserError(Exception):
    """A problem with the user's input: the message names the file or flag and how to fix it."""


def run_cli(main, argv=None):
    """Call ``main(argv)``; turn a :class:`UserError` into one line on stderr and exit status 2."""
    try:
        return main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
