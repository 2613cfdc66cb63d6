"""A write that fails during training (disk full, permissions) as one line saying what is still intact."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

from util.errors import FileSystemError, UserError


@contextmanager
def write_errors_as_one_line(path, intact: str | Callable[[], str]):
    """An OSError while writing ``path`` (also the FileSystemError that util.files' atomic writers make of one: it
    names the file written) becomes a UserError of one line: what failed, ``intact`` (text, or a callable giving it
    at that moment) and how to go on."""
    try:
        yield
    except FileSystemError as err:
        if err.reason is None:
            raise
        where, reason = err.path or path, err.reason
    except OSError as err:
        where, reason = err.filename or path, err.strerror or str(err) or type(err).__name__
    else:
        return
    state = intact() if callable(intact) else intact
    raise UserError(f"cannot write {where}: {reason}; {state}: free disk space (or fix permissions), then resume "
                    "with --continue_train") from None
