"""The one exception type for problems the user can fix (bad file, bad flag, missing data).

Command-line entry points catch :class:`UserError`, print its message on one line and exit with
status 2; anything else is a bug and keeps its traceback. A full disk, a missing permission or a read-only
file system (an ``OSError`` with one of :data:`FILE_SYSTEM_ERRNOS`) is the user's to fix too: it also gets
one line naming the path. A :class:`UserError` raised in a DataLoader worker keeps its own one-line message
(:func:`unwrap_worker_error`).
"""

from __future__ import annotations

import errno
import os
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
# torch.utils.data re-raises an exception of a DataLoader worker in the main process as the same type, with the
# message "Caught <Type> in DataLoader worker process <n>.\nOriginal Traceback (most recent call last):\n..."
_WORKER_WRAPPED = re.compile(r"^Caught \w+ in .+\.\nOriginal Traceback \(most recent call last\):\n", re.DOTALL)


class UserError(Exception):
    """A problem with the user's input: the message names the file or flag and how to fix it."""


class FileSystemError(UserError):
    """A full disk, a missing permission, a read-only file system: nothing later in the run can succeed either.

    ``path``: the file or folder the message names; ``reason``: the system's words (``No space left on device``), for
    callers that word the line themselves (train.py adds what stayed intact). Both ``None`` when not known.
    """

    def __init__(self, message: str, path=None, reason: str | None = None):
        super().__init__(message)
        self.path, self.reason = path, reason


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
        return FileSystemError(f"{reason}; {hint}", None, reason)
    message = f"cannot {action} {where}: {reason}; {hint}" if action else f"{where}: {reason}; {hint}"
    return FileSystemError(message, where, reason)


def unwrap_worker_error(err: UserError) -> UserError:
    """A :class:`UserError` raised in a DataLoader worker, as raised there (its own one-line message); ``err``
    itself when it did not come from a worker.

    The main process gets a new exception of the same type whose message is the worker's whole traceback; its last
    exception line holds the original message. The one unwrapping of worker errors: :func:`run_cli`, train.py,
    test.py and remove_reflection.py use it.
    """
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
    """Call ``main(argv)``; turn a :class:`UserError` (also one from a DataLoader worker) or a file-system ``OSError``
    (a full disk, a missing permission) into one line on stderr and exit status 2."""
    try:
        return main(argv)
    except UserError as err:
        print(f"error: {unwrap_worker_error(err)}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        user_error = file_system_error(err, action=None)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(2)


def exit_fast(status: int | None = 0) -> None:
    """End a finished command-line run now: flush stdout and stderr, then ``os._exit(status)``, skipping Python's
    interpreter teardown, which costs about 0.6 s once torch is imported (measured on a 2-core Xeon: more than a
    448x640 image's PNG files take to write). Everything the tools write is closed by then (atomic writes). Where
    child processes are still alive (DataLoader workers) it is a plain ``sys.exit`` so that they are joined. Only for
    ``if __name__ == "__main__"`` blocks: it ends the process, whoever called it."""
    import multiprocessing

    status = 0 if status is None else int(status)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    if multiprocessing.active_children():
        sys.exit(status)
    os._exit(status)
