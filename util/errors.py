"""The one exception type for problems the user can fix (bad file, bad flag, missing data).

Command-line entry points catch :class:`UserError`, print its message on one line and exit with
status 2; anything else is a bug and keeps its traceback. A full disk, a missing permission or a read-only
file system (an ``OSError`` with one of :data:`FILE_SYSTEM_ERRNOS`) is the user's to fix too: it also gets
one line naming the path.
"""

from __future__ import annotations

import errno
import re
import sys

# errno -> what the user can do about it; these OSErrors are problems of the machine, not bugs
FILE_SYSTEM_ERRNOS = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EACCES: "check the permissions of the file and its folder, or write elsewhere",
    errno.EPERM: "check the permissions of the file and its folder, or write elsewhere",
    errno.EROFS: "write elsewhere",
}
_TRACEBACK_LAST_LINE = re.compile(r"^[\w.]+: (.*)$")  # "util.errors.UserError: <message>"


class UserError(Exception):
    """A problem with the user's input: the message names the file or flag and how to fix it."""


class FileSystemError(UserError):
    """A full disk, a missing permission, a read-only file system: nothing later in the run can succeed either."""


def file_system_error(err: OSError, path=None, action: str | None = "write") -> FileSystemError | None:
    """A one-line :class:`FileSystemError` for a disk-full / permission / read-only ``err``: ``cannot <action> <path>:
    <reason>; <fix>`` (``<path>: <reason>; <fix>`` with ``action=None``), ``path`` defaulting to the one in ``err``.
    ``None`` for any other ``OSError`` (a bug, or a problem worth its traceback)."""
    hint = FILE_SYSTEM_ERRNOS.get(err.errno)
    if hint is None:
        return None
    where = path if path is not None else err.filename
    reason = err.strerror or f"errno {err.errno}"
    if where is None:
        return FileSystemError(f"{reason}; {hint}")
    return FileSystemError(f"cannot {action} {where}: {reason}; {hint}" if action else f"{where}: {reason}; {hint}")


def user_message(err: UserError) -> str:
    """The one-line message of ``err``. A ``UserError`` raised in a DataLoader worker reaches the main process as a
    new ``UserError`` whose message is the worker's whole traceback: its last line holds the original message."""
    text = str(err).strip()
    if "\nOriginal Traceback" in text:
        last = text.splitlines()[-1]
        match = _TRACEBACK_LAST_LINE.match(last)
        return match.group(1) if match else last
    return text


def run_cli(main, argv=None):
    """Call ``main(argv)``; turn a :class:`UserError` (or a file-system ``OSError`` such as a full disk) into one
    line on stderr and exit status 2."""
    try:
        return main(argv)
    except UserError as err:
        print(f"error: {user_message(err)}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        user_error = file_system_error(err, action=None)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(2)
