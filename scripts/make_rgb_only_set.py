#!/usr/bin/env python3
"""Turn RGB-only reflection pairs (a photo through glass + its ground-truth transmission) into the upstream test
layout, with a RAW made by inverting a fixed ISP, so that CR3Net can be evaluated on them.

    python -m scripts.make_rgb_only_set --blend ../shared/data/reflection/location_aware_sirr/blend \
        --transmission ../shared/data/reflection/location_aware_sirr/transmission --out datasets/real_rgb_only

Real through-glass photos are rarely published with their RAW files. Here each RGB image (input and ground truth
alike) is unprocessed with one fixed, neutral camera (:meth:`util.isp.ISPParams.identity`: inverse tone curve and
gamma, identity colour matrix and white balance), mosaicked (RGGB) and quantised to the default camera profile
(black 400, white 16383). The RAW branch then sees a plausible linear image but no information the RGB does not
have: numbers on such a set measure CR3Net without its RAW advantage. Images are cropped to even sizes.
Pairs match by file stem; a missing partner is an error.
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.make_rgb_only_set [flags]")

import argparse
from pathlib import Path

from data.cameras import DATASET_PROFILE_FILE
from data.pseudo_raw import write_pseudo_raw_pair
from util.errors import UserError, run_cli
from util.image_io import RGB_EXTENSIONS, files_by_stem, read_rgb


def by_stem(folder: Path) -> dict[str, Path]:
    """``{stem: image}`` of ``folder`` (:func:`util.image_io.files_by_stem`); a folder without images is an error."""
    files = files_by_stem(folder, RGB_EXTENSIONS, unique=True)
    if not files:
        raise UserError(f"{folder} holds no images ({', '.join(RGB_EXTENSIONS)})")
    return files


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blend", required=True, help="folder of photos through glass (the input I)")
    p.add_argument("--transmission", required=True, help="folder of ground-truth transmissions, same stems")
    p.add_argument("--out", required=True, help="output folder (upstream layout: testB_*, testA1_*)")
    args = p.parse_args(argv)
    blends, trans = by_stem(Path(args.blend)), by_stem(Path(args.transmission))
    out = Path(args.out)
    for stem, path in blends.items():
        if stem not in trans:
            raise UserError(f"no ground-truth transmission for {path}: looked for {stem}.* in {args.transmission}")
        blend, transmission = read_rgb(path), read_rgb(trans[stem])
        if blend.shape != transmission.shape:
            raise UserError(f"{path} and {trans[stem]} differ in size")
        h, w = write_pseudo_raw_pair(out, stem, blend, transmission)
        print(f"{stem}: {w}x{h}")
    (out / DATASET_PROFILE_FILE).write_text('{"camera": "default"}\n')
    print(f"wrote {len(blends)} pairs to {out}")


if __name__ == "__main__":
    run_cli(main)
