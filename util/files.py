"""Writing result files: whole or not at all, and a full disk or a missing permission as one line naming the file.

:func:`atomic_write` is the one way the project writes an output file (images, metrics, reports, weights): the
content goes to a temporary file in the same folder, is flushed to the disk, then renamed over ``path``, so a crash,
a full disk or Ctrl-C never leaves a torn file behind, and never a half-written replacement of an older one.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from util.errors import file_system_error


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Create or replace ``path`` with what ``write(tmp_path)`` writes to a temporary path beside it.

    ``write`` must write a complete file at the path it is given (its name is hidden and ends in ``.tmp``: give
    writers that guess the format from the extension the format explicitly). The parent folder is created.
    A disk-full, permission or read-only-file-system ``OSError`` becomes a :class:`util.errors.UserError` naming
    ``path``; other errors propagate. The temporary file never survives a failure.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temporary(path)
        write(Path(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # a full disk may only show here (delayed allocation, network file systems)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        user_error = file_system_error(err, path)
        if user_error is None:
            raise
        raise user_error from err
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def _create_temporary(path: Path) -> str:
    """An empty new file ``.<name>.<random>.tmp`` beside ``path``, with the permissions a plain ``open`` would give
    (``tempfile.mkstemp`` makes files only their owner can read)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return str(tmp)
    raise FileExistsError(f"no free temporary name beside {path}")


def write_text(path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def link_problem(path) -> str | None:
    """Why ``path`` cannot be opened although its name is there: a symbolic link that loops or points nowhere.

    ``None`` where ``path`` resolves (or does not exist at all). ``Path.is_dir()``/``is_file()`` answer False for
    both cases, which callers would otherwise report as "missing" or "empty".
    """
    path = Path(path)
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return f"{path} is a symbolic link that loops back on itself; point it at a real file or folder"
        return f"{path} is a symbolic link to {os.readlink(path)}, which does not exist; fix or remove the link"
    return None
