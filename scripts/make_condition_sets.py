#!/usr/bin/env python3
"""Build the held-out synthetic test sets of the RAW-vs-RGB study, one per condition (see data/condition_sets.py).

    python -m scripts.make_condition_sets                  # from ../shared/data/photos into datasets/conditions/
    python -m scripts.make_condition_sets --photos my_photos --holdout_every 8 --num 12 --size 256x384

``--photos`` and ``--holdout_every`` must be train.py's ``--dataroot`` and ``--holdout_every``: the sets are made
from exactly the photos that training leaves out. Conditions: normal, highlights (exposure x1.4-2.0: the RGB clips
where the RAW keeps headroom), low_light (exposure x0.3-0.6, shot noise 1e-3-1.2e-2), strong_reflection (reflection
gain 0.45-0.6) and weak_reflection (0.15-0.25); the same scenes and random draws in every set. Each set has a
``manifest.json`` and is rebuilt only when its request changes. ``scripts/raw_vs_rgb.py`` builds them itself.
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.make_condition_sets [flags]")

import argparse
from pathlib import Path

from data.condition_sets import CONDITIONS, DEFAULT_NUM, DEFAULT_SEED, DEFAULT_SIZE, make_condition_sets, parse_size_hw
from data.splits import DEFAULT_HOLDOUT_EVERY
from util.errors import run_cli
from util.help import HelpFormatter

DEFAULT_OUT = "datasets/conditions"
SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help="folder that receives one sub-folder per condition")
    p.add_argument("--photos", default=str(SHARED_PHOTOS), help="photo folder: train.py's --dataroot")
    p.add_argument("--holdout_every", type=int, default=DEFAULT_HOLDOUT_EVERY, metavar="N",
                   help="the held-out split of train.py --holdout_every N (about 1 photo in N)")
    p.add_argument("--num", type=int, default=DEFAULT_NUM, help="images per condition")
    p.add_argument("--size", default="x".join(map(str, DEFAULT_SIZE)), metavar="HxW", help="RGB size (even)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed of the scenes and draws")
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS),
                   help="the conditions to build")
    p.add_argument("--force", action="store_true", help="rebuild even the sets that are up to date")
    return p.parse_args(argv)


def main(argv=None) -> dict[str, Path]:
    args = parse_args(argv)
    return make_condition_sets(args.out, args.photos, args.holdout_every, args.num, parse_size_hw(args.size),
                               args.seed, args.conditions, args.force)


if __name__ == "__main__":
    run_cli(main)
