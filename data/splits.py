"""The held-out split: one fixed rule that decides which photos and real pairs are never trained on.

``train.py --holdout_every N`` leaves out every item for which :func:`is_held_out` is true, and
``scripts/make_val_sets.py --holdout_every N`` builds its validation sets from exactly those items, so the two can
never overlap. The rule hashes a name (the stem of a real pair, the path of a photo relative to its photo folder):
it does not depend on which other files are present, so adding photos never moves an old one across the split.
"""

from __future__ import annotations

import hashlib

DEFAULT_HOLDOUT_EVERY = 8  # the demo recipe and make_val_sets.py: about one item in eight is held out


def is_held_out(name: str, every: int) -> bool:
    """True for about one ``name`` in ``every`` (never when ``every`` <= 0): SHA-256 of the name, modulo ``every``."""
    if every <= 0:
        return False
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % every == 0


def split(names, every: int) -> tuple[list[str], list[str]]:
    """``(kept, held_out)`` of ``names`` (order preserved) under :func:`is_held_out`."""
    kept, held = [], []
    for name in names:
        (held if is_held_out(name, every) else kept).append(name)
    return kept, held
