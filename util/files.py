"""Crash-safe file writes: staged temporary files, their naming, and the clean-up of those a killed process left.

A file is written to a hidden temporary file beside it, ``.<name>.<8 random characters>.tmp`` (the name
``tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp")`` gives, as ``models.checkpoint.atomic_torch_save`` uses),
flushed, fsync'ed and renamed over ``<name>``. A kill during the write leaves the old file intact and the temporary
file behind; :func:`remove_dead_temps` deletes exactly those (and no other file) at the next start.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".tmp"
# .<target>.<mkstemp's 8 characters: a-z, 0-9, _>.tmp, for the kinds of files our runs write
TEMP_NAME = re.compile(r"^\.(?P<target>[^/\\]+\.(?:pth|txt|csv))\.[a-z0-9_]{8}\.tmp$")


def stage_file(path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a temporary file beside ``path`` with ``write(f)`` (binary), flush and fsync it; returns its path.

    On any error the temporary file is removed and the error re-raised; ``path`` itself is never touched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write_text(path, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8) atomically: a crash leaves either the old or the new file."""
    tmp = stage_file(path, lambda f: f.write(text.encode()))
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    """True for a temporary file of :func:`stage_file` / ``atomic_torch_save`` (by its name only)."""
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
