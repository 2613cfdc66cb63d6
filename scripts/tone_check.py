#!/usr/bin/env python3
"""How much of a model's PSNR gain is global tone, and how much is separation: a check on test.py's saved results.

    python test.py --dataroot datasets/val/real_zhang_heldout ... --results_dir results/zhang
    python -m scripts.tone_check results/zhang/demo/test_final [more test.py result folders ...]

A network that has not learned to separate can still gain PSNR over "do nothing" by changing the brightness of
every image (the average light a reflection adds in training, taken away everywhere). This script reads the 8-bit
images test.py saved (``images/<stem>_I.png``, ``<stem>_T.png``, ``<stem>_T_gt.png``) and reports, per folder, as
means over its images (PSNR in dB on the saved 8-bit images, :func:`util.metrics.psnr`; the arithmetic is
:mod:`util.tone`'s, which also gives test.py its ``tone_psnr`` and ``separation_psnr`` columns):

* ``do nothing``: the input I scored as T;
* ``model``: the predicted T;
* ``tone of T on I``: the input multiplied per RGB channel by the prediction's own global gain
  ``mean(T_pred) / mean(I)`` (sRGB values as saved), quantised like every saved image: what the model's brightness
  and tint change alone scores, with the image content of the input;
* ``separation``: model minus "tone of T on I", the part of the gain that a global gain does not explain
  (mean and the smallest over the images);
* ``best gain``: the input multiplied per channel by the least-squares gain against the ground truth
  (``<I, T_gt> / <I, I>``), an oracle that knows T: the most any global per-channel gain can score;
* ``T/I``: the prediction's brightness ratio ``mean(T_pred) / mean(I)`` over all channels (mean, min, max);
* ``curve of T on I``: the input through the prediction's own per-channel tone curve (a 256-entry lookup table per
  channel fitted by least squares from I to T_pred, :func:`util.tone.curve_image`): what the model's tone and
  contrast change alone scores, a curve being unable to remove a structure;
* ``beyond the curve``: model minus "curve of T on I" (mean and the smallest over the images): the part of the gain
  no tone curve of the input explains, the stricter measure of separation;
* ``T vs curve``: PSNR between the prediction and that curve of I: near 35 dB or more, T is little more than a tone
  curve of its input, whatever its gain;
* ``best curve``: the input's least-squares per-channel curve onto the ground truth, an oracle: the most any tone
  curve can score (reflections add light where they are, so a curve that darkens highlights scores well above a
  gain).

Folders without ground truth (no ``*_T_gt.png``) are refused with a message naming them.
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.tone_check [flags]")

import argparse
import json
from pathlib import Path

import numpy as np

from util.errors import UserError, run_cli
from util.help import HelpFormatter
from util.image_io import files_by_stem, read_rgb
from util.metrics import json_safe, psnr
from util.tone import curve_scores, tone_scores

SUFFIXES = ("_I", "_T", "_T_gt")  # test.py's names for the input, the predicted T and the ground-truth T


def score_image(I_u8: np.ndarray, T_u8: np.ndarray, gt_u8: np.ndarray) -> dict[str, float]:
    """The per-image figures of the module docstring for one (input, prediction, ground truth) triple (uint8)."""
    scores = tone_scores(I_u8, T_u8, gt_u8)
    row = {"do_nothing": psnr(gt_u8, I_u8), "model": psnr(gt_u8, T_u8), "tone_only": scores["tone_psnr"],
           "best_gain": scores["best_gain_psnr"], "ratio": scores["tone_ratio"]}
    row["separation"] = row["model"] - row["tone_only"]
    curve = curve_scores(I_u8, T_u8, gt_u8)
    row.update(curve=curve["curve_psnr"], beyond_curve=curve["beyond_curve_psnr"],
               curve_fidelity=curve["curve_fidelity_psnr"], best_curve=curve["best_curve_psnr"])
    return row


def triples(folder: Path) -> dict[str, dict[str, Path]]:
    """``{stem: {"_I": path, "_T": path, "_T_gt": path}}`` from a test.py result folder (or its ``images/``)."""
    images = folder / "images" if (folder / "images").is_dir() else folder
    found: dict[str, dict[str, Path]] = {}
    for name, path in files_by_stem(images, (".png",), unique=True).items():
        for suffix in sorted(SUFFIXES, key=len, reverse=True):  # "_T_gt" before "_T"
            if name.endswith(suffix):
                found.setdefault(name[: -len(suffix)], {})[suffix] = path
                break
    complete = {stem: parts for stem, parts in found.items() if len(parts) == len(SUFFIXES)}
    if not complete:
        raise UserError(f"{images} holds no complete <stem>_I.png / <stem>_T.png / <stem>_T_gt.png triple: point "
                        "at a test.py result folder of a set with ground truth (testA1_rgb)")
    return dict(sorted(complete.items()))


def check_folder(folder: Path) -> dict:
    """Per-image rows and their summary for one test.py result folder."""
    rows = {stem: score_image(*(read_rgb(parts[s]) for s in SUFFIXES)) for stem, parts in triples(folder).items()}
    values = {key: np.array([row[key] for row in rows.values()]) for key in next(iter(rows.values()))}
    summary = {key: float(v.mean()) for key, v in values.items()}
    summary.update(images=len(rows), worst_separation=float(values["separation"].min()),
                   worst_beyond_curve=float(values["beyond_curve"].min()),
                   ratio_min=float(values["ratio"].min()), ratio_max=float(values["ratio"].max()))
    return {"folder": str(folder), "summary": summary, "images": rows}


def _scored(s: dict, key: str) -> str:
    """A summary's PSNR and, in brackets, its gain over doing nothing."""
    return f"{s[key]:.2f} ({s[key] - s['do_nothing']:+.2f})"


GAIN_COLUMNS = (  # the first table: the global per-channel gain
    ("images", lambda s: str(s["images"])),
    ("do nothing", lambda s: f"{s['do_nothing']:.2f}"),
    ("model (gain)", lambda s: _scored(s, "model")),
    ("tone of T on I (gain)", lambda s: _scored(s, "tone_only")),
    ("separation (worst)", lambda s: f"{s['separation']:+.2f} ({s['worst_separation']:+.2f})"),
    ("best gain (oracle)", lambda s: _scored(s, "best_gain")),
    ("T/I (min-max)", lambda s: f"{s['ratio']:.3f} ({s['ratio_min']:.3f}-{s['ratio_max']:.3f})"),
)
CURVE_COLUMNS = (  # the second table: the per-channel tone curve
    ("model (gain)", lambda s: _scored(s, "model")),
    ("curve of T on I (gain)", lambda s: _scored(s, "curve")),
    ("beyond the curve (worst)", lambda s: f"{s['beyond_curve']:+.2f} ({s['worst_beyond_curve']:+.2f})"),
    ("T vs curve", lambda s: f"{s['curve_fidelity']:.1f}"),
    ("best curve (oracle)", lambda s: _scored(s, "best_curve")),
)


def _markdown(results: list[dict], columns) -> list[str]:
    lines = ["| results | " + " | ".join(name for name, _ in columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [f"| {r['folder']} | " + " | ".join(cell(r["summary"]) for _, cell in columns) + " |" for r in results]
    return lines


def format_table(results: list[dict]) -> str:
    """Two Markdown tables, one row per folder (PSNR in dB, gains over doing nothing): the global gain, then the
    tone curve."""
    return "\n".join([*_markdown(results, GAIN_COLUMNS), "", *_markdown(results, CURVE_COLUMNS)])


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("folders", nargs="+", type=Path,
                   help="test.py result folders (RESULTS_DIR/NAME/test_EPOCH, or their images/ folder)")
    p.add_argument("--json", default="", help="also write every image's figures and the summaries to this JSON file")
    args = p.parse_args(argv)
    results = [check_folder(folder) for folder in args.folders]
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(json_safe(results), indent=2) + "\n")
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    run_cli(main)
