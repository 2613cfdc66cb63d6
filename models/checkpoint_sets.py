"""Checkpoint sets: ``<label>_train_state.pth`` and its bare copies ``<label>_net_G_T.pth`` / ``<label>_net_D.pth``,
always from one iteration.

The train state holds G and D too (keys ``net_G_T``, ``net_D``), so it is the authority; the bare copies are what
test.py and upstream's code load. :func:`write_set` writes a set in two phases:

1. stage: each file to a temporary file beside it (fsync'ed). A failure here (disk full, no permission, a kill)
   removes the temporary files (a kill leaves them to :func:`util.files.remove_dead_temps`) and leaves the previous
   set as it was;
2. commit: create the marker ``.<label>.saving``, rename the train state into place (from here on the set is the new
   iteration), then the bare copies, then delete the marker.

Only a kill (or a failed rename) during the commit can leave a set split: its marker says so, and
:func:`repair_pending_sets` (train.py, at its start) rewrites the bare copies from the train state. :func:`sync_members`
checks a set by content (train.py, for the set it resumes from: also sets written by older versions or copied by hand).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from models.checkpoint import safe_torch_load
from util.errors import UserError
from util.files import atomic_torch_save, fsync_dir, stage_file

AUTHORITY = "train_state"  # <label>_train_state.pth: everything, renamed first
MEMBERS = ("net_G_T", "net_D")  # bare state_dicts, copies of the train state's entries of the same names
MARKER = re.compile(r"^\.(?P<label>[^/\\]+)\.saving$")


class CheckpointWriteError(UserError):
    """A checkpoint file could not be written (disk full, permissions); the message says what stayed intact."""


def set_paths(folder, label) -> dict[str, Path]:
    """``{kind: <folder>/<label>_<kind>.pth}`` for the members and the train state."""
    folder = Path(folder)
    return {kind: folder / f"{label}_{kind}.pth" for kind in (*MEMBERS, AUTHORITY)}


def marker_path(folder, label) -> Path:
    return Path(folder) / f".{label}.saving"


def pending_labels(folder) -> list[str]:
    """Labels whose last write was interrupted during its commit (their bare copies may lag the train state)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(m["label"] for p in folder.iterdir() if (m := MARKER.match(p.name)) and p.is_file())


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def write_set(folder, label, state: dict) -> dict[str, Path]:
    """Write the set ``label`` from ``state`` (a train state holding ``net_G_T`` and ``net_D``); returns its paths.

    Raises :class:`CheckpointWriteError` (one line naming the file) when a file cannot be written.
    """
    paths = set_paths(folder, label)
    folder = paths[AUTHORITY].parent
    contents = {**{kind: state[kind] for kind in MEMBERS}, AUTHORITY: state}
    staged: dict[str, Path] = {}
    try:
        for kind, obj in contents.items():
            staged[kind] = stage_file(paths[kind], lambda f, obj=obj: torch.save(obj, f))
    except BaseException as err:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise CheckpointWriteError(
                f"cannot write checkpoint {paths[kind]}: {_reason(err)}; the previous '{label}' checkpoint is "
                "unchanged (free disk space or fix the folder's permissions)"
            ) from None
        raise
    marker = marker_path(folder, label)
    committed, target = False, marker
    try:
        with open(marker, "w") as f:
            f.write(f"{label}\n")
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(folder)
        target = paths[AUTHORITY]
        os.replace(staged[AUTHORITY], target)
        committed = True
        for kind in MEMBERS:
            target = paths[kind]
            os.replace(staged[kind], target)
        fsync_dir(folder)
        marker.unlink()
    except OSError as err:
        if not committed:
            marker.unlink(missing_ok=True)
            raise CheckpointWriteError(
                f"cannot write checkpoint {target}: {_reason(err)}; the previous '{label}' checkpoint is unchanged"
            ) from None
        raise CheckpointWriteError(
            f"cannot write checkpoint {target}: {_reason(err)}; {paths[AUTHORITY].name} is new and the next start "
            f"of train.py completes the set '{label}' from it"
        ) from None
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    return paths


def _same_tensors(a, b: dict) -> bool:
    if not isinstance(a, dict) or a.keys() != b.keys():
        return False
    return all(
        isinstance(a[k], torch.Tensor) and a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        and torch.equal(a[k], b[k])
        for k in b
    )


def sync_members(folder, label, state: dict) -> list[Path]:
    """Rewrite each bare copy of the set ``label`` that is missing, unreadable or differs from ``state``'s entry;
    returns the files rewritten (usually none)."""
    rewritten = []
    paths = set_paths(folder, label)
    for kind in MEMBERS:
        try:
            on_disk = torch.load(paths[kind], map_location="cpu", weights_only=True)
        except Exception:  # missing, torn by an older version, not a state_dict: rewritten below
            on_disk = None
        if not _same_tensors(on_disk, state[kind]):
            atomic_torch_save(state[kind], paths[kind])
            rewritten.append(paths[kind])
    return rewritten


def repair_pending_sets(folder) -> list[str]:
    """Complete every set whose commit was interrupted (see the module's docstring); returns one note per set.

    Call it only where no other process writes checkpoints into ``folder`` (train.py at its start, on rank 0).
    """
    notes = []
    for label in pending_labels(folder):
        marker = marker_path(folder, label)
        path = set_paths(folder, label)[AUTHORITY]
        if not path.is_file():  # killed before the train state's rename: nothing of this write was committed
            marker.unlink(missing_ok=True)
            continue
        try:
            state = safe_torch_load(path, "training state")  # one line, never torch's weights_only=False advice
        except UserError as err:
            raise UserError(f"cannot complete the interrupted checkpoint '{label}': {err}; "
                            f"delete {folder}/{label}_*.pth and {marker.name} or use another --name") from None
        members_ok = isinstance(state, dict) and all(isinstance(state.get(k), dict) for k in MEMBERS)
        if not members_ok:
            raise UserError(f"cannot complete the interrupted checkpoint '{label}': {path} holds no net_G_T/net_D; "
                            f"delete {folder}/{label}_*.pth and {marker.name} or use another --name")
        rewritten = sync_members(folder, label, state)
        fsync_dir(folder)
        marker.unlink()
        iteration = state.get("progress", {}).get("iteration", "?")
        if rewritten:
            names = ", ".join(p.name for p in rewritten)
            notes.append(f"checkpoint '{label}' was interrupted while being saved: {names} rewritten from "
                         f"{path.name} (iteration {iteration})")
    return notes
