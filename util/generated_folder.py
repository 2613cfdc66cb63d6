"""Folders that a generator builds from a request: the test sets of scripts/make_demo_dataset.py,
scripts/make_val_sets.py and data/condition_sets.py, the sets of scripts/measure_work_resolution.py.

The folder's ``manifest.json`` holds ``{"request": ..., "items": [...]}``; the request is everything its files depend
on, so a folder is rebuilt only when its request changes. A folder is written beside its place (``<folder>.partial``)
and then renamed into place, so a stopped build leaves no half-written set; a non-empty folder whose manifest does not
name the generator is never replaced. Nothing heavy is imported: an up-to-date check stays fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from util.errors import UserError

MANIFEST = "manifest.json"
PARTIAL_SUFFIX = ".partial"


def is_up_to_date(folder, request: dict, files=None) -> bool:
    """True where ``folder``'s manifest records ``request``. With ``files`` (a function from the stems of the
    manifest's items to paths relative to ``folder``), the manifest must also list ``request['num']`` items and every
    one of those files must exist."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("request") != request:
        return False
    if files is None:
        return True
    stems = [item.get("stem") for item in manifest.get("items", []) if isinstance(item, dict)]
    if len(stems) != request["num"] or not all(isinstance(s, str) for s in stems):
        return False
    return all((folder / rel).is_file() for rel in files(stems))


def layout_files(stems, folders) -> list[str]:
    """The RGB and RAW PNGs of ``stems`` in each of ``folders`` of the test layout (``<folder>_rgb/<stem>.png`` and
    ``<folder>_raw/<stem>.png``), relative to the set's folder."""
    return [f"{folder}_{kind}/{stem}.png" for folder in folders for kind in ("rgb", "raw") for stem in stems]


def check_replaceable(folder, generator: str, flag: str = "--out") -> None:
    """:class:`UserError` where ``folder`` is a file, or a non-empty folder whose manifest does not name ``generator``;
    ``flag`` is the option that chose the place (named in the message)."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UserError(f"{folder} is a file where a folder of {generator} belongs; move it away or choose another "
                        f"{flag}")
    manifest = folder / MANIFEST
    ours = manifest.is_file() and generator in manifest.read_text(encoding="utf-8", errors="replace")
    if any(folder.iterdir()) and not ours:
        raise UserError(f"{folder} is a non-empty folder that {generator} did not make; choose another {flag}")


def build_folder(folder, request: dict, fill) -> list | None:
    """Build ``folder``: ``fill(partial)`` writes the files into an empty ``<folder>.partial`` and returns the
    manifest's items (None: the manifest holds the request alone); the manifest follows, then the new folder replaces
    ``folder``. Returns the items."""
    folder = Path(folder)
    partial = folder.with_name(folder.name + PARTIAL_SUFFIX)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    items = fill(partial)
    manifest = {"request": request} if items is None else {"request": request, "items": items}
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return items
