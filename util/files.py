"""Writing files whole or not at all; one naming of their temporary files, and the clean-up of those a kill left.

Every write of a result, log, report or weights file goes to a hidden temporary file beside its target,
``.<name>.<8 random characters>.tmp`` (:data:`TEMP_NAME`), created with the permissions a plain ``open`` would give
(``tempfile.mkstemp`` makes files only their owner can read), flushed and fsync'ed, then renamed over ``<name>``.
A crash, a full disk or Ctrl-C never leaves a torn file, and never a half-written replacement of an older one; a
kill leaves the old file intact and the temporary file behind, which :func:`remove_dead_temps` deletes (and no other
file) at the next start.

* :func:`atomic_write` (``write(tmp_path)``) and its :func:`atomic_write_bytes`, :func:`atomic_write_text`,
  :func:`atomic_torch_save`: the one way an output file is written (images: :mod:`util.image_io`). A disk-full,
  permission or read-only-file-system ``OSError`` becomes a one-line :class:`util.errors.FileSystemError` naming
  the target.
* :func:`stage_file` (``write(binary_file)``): only the first half, for callers that rename several files together
  (:func:`models.checkpoint_sets.write_set`); its ``OSError`` propagates as is.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

from util.errors import file_system_error

TEMP_SUFFIX = ".tmp"
# .<target with an extension>.<8 random characters>.tmp: secrets.token_hex(4) (0-9, a-f) as written now, or the
# a-z, 0-9, _ of tempfile.mkstemp (what earlier versions of the checkpoint writers used)
TEMP_NAME = re.compile(r"^\.(?P<target>[^/\\]+\.[A-Za-z0-9]+)\.[a-z0-9_]{8}\.tmp$")


def _create_temporary(path: Path) -> Path:
    """An empty new file ``.<name>.<8 hex digits>.tmp`` beside ``path`` (matching :data:`TEMP_NAME`), with the
    permissions a plain ``open`` would give."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def stage_file(path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a temporary file beside ``path`` with ``write(f)`` (binary), flush and fsync it; returns its path.

    The caller renames it into place (``os.replace``) or deletes it. On any error the temporary file is removed and
    the error re-raised as it is; ``path`` itself is never touched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Create or replace ``path`` with what ``write(tmp_path)`` writes to a temporary path beside it.

    ``write`` must write a complete file at the path it is given (its name is hidden and ends in ``.tmp``: give
    writers that guess the format from the extension the format explicitly). The parent folder is created.
    A disk-full, permission or read-only-file-system ``OSError`` becomes a :class:`util.errors.FileSystemError`
    naming ``path``; other errors propagate. The temporary file never survives a failure.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temporary(path)
        write(tmp)
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
            tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    """:func:`atomic_write` of ``data`` as the whole file."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_torch_save(obj, path) -> Path:
    """:func:`atomic_write` of ``torch.save(obj)`` (handed an open binary file, as ``torch.save`` into a file
    object writes the same bytes as into a path)."""
    import torch  # here, so that the other writers do not need torch

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    return atomic_write(path, save)


def fsync_dir(folder) -> None:
    """Make renames and deletions in ``folder`` durable (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_dead_temp(path) -> bool:
    """True for a temporary file of :func:`stage_file` / :func:`atomic_write` and the writers built on it (by its
    name only: ``.<name>.<8 random characters>.tmp``)."""
    return TEMP_NAME.match(Path(path).name) is not None


def remove_dead_temps(folder) -> list[Path]:
    """Delete the temporary files that killed writes left directly in ``folder``; returns them.

    Call it only where no other process is writing into ``folder`` (train.py at its start, on rank 0).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if is_dead_temp(path) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


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
