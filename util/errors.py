"""The one exception type for problems the user can fix (bad file, bad flag, missing data).

Command-line entry points catch :class:`UserError`, print its message on one line and exit with
status 2; anything else is a bug and keeps its traceback.
"""

import re
import sys

# torch.utils.data re-raises an exception of a DataLoader worker in the main process as the same type, with the
# message "Caught <Type> in DataLoader worker process <n>.\nOriginal Traceback (most recent call last):\n..."
_WORKER_WRAPPED = re.compile(r"^Caught \w+ in .+\.\nOriginal Traceback \(most recent call last\):\n", re.DOTALL)


class UserError(Exception):
    """A problem with the user's input: the message names the file or flag and how to fix it."""


def unwrap_worker_error(err: UserError) -> UserError:
    """A :class:`UserError` raised in a DataLoader worker, as raised there (its own one-line message); ``err``
    itself when it did not come from a worker."""
    text = str(err)
    if not _WORKER_WRAPPED.match(text):
        return err
    cls = type(err)
    lines = text.splitlines()
    # the traceback's last exception line: "<module>.<Type>: <message>" (format_exception_only)
    heads = (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__qualname__}: ")
    for i in range(len(lines) - 1, -1, -1):
        head = next((h for h in heads if lines[i].startswith(h)), None)
        if head is not None:
            message = "\n".join([lines[i][len(head):], *lines[i + 1:]]).strip()
            break
    else:
        message = lines[-1].strip()
    try:
        return cls(message)
    except Exception:  # a subclass with another constructor
        return UserError(message)


def run_cli(main, argv=None):
    """Call ``main(argv)``; turn a :class:`UserError` into one line on stderr and exit status 2."""
    try:
        return main(argv)
    except UserError as err:
        print(f"error: {unwrap_worker_error(err)}", file=sys.stderr)
        sys.exit(2)
