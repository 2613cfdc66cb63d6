"""The learning curve of a training run: PSNR gain over doing nothing on each validation set, per iteration.

train.py redraws ``<checkpoints_dir>/<name>/learning_curve.png`` after every validation from ``val_log.csv``;
``python -m util.learning_curve VAL_LOG.csv -o curve.png`` draws it from any run's log (the README's figure).

Left panel: mean T PSNR minus input PSNR (dB) per set, with the worst image's gain dashed and, in logs that have it,
the separation dotted (``separation_psnr``: the gain less what T's global tone alone scores, ``util.tone``) and the
gain beyond T's tone curve dash-dotted (``beyond_curve_psnr``, the stricter separation); right
panel: SSIM and LPIPS of T minus those of the input (SSIM up and LPIPS down are better). A horizontal line marks
"no change".
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from util.errors import UserError, run_cli
from util.files import atomic_write

REQUIRED_COLUMNS = ("iteration", "set", "gain_psnr")


def read_val_log(path) -> dict[str, list[dict[str, float]]]:
    """``{set: [row, ...]}`` from a val_log.csv (rows in file order; numeric fields as floats, empty as NaN).

    A row whose iteration repeats an earlier one of the same set (a resumed run that validated again) replaces it.
    """
    path = Path(path)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path} lacks the column(s) {', '.join(missing)}: not a val_log.csv of this version")
            sets: dict[str, dict[float, dict[str, float]]] = {}
            for raw in reader:
                row = {}
                for key, value in raw.items():
                    if key == "set":
                        continue
                    try:
                        row[key] = float(value) if value not in ("", None) else math.nan
                    except ValueError:
                        row[key] = math.nan
                sets.setdefault(raw["set"], {})[row["iteration"]] = row
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    return {name: [rows[i] for i in sorted(rows)] for name, rows in sets.items()}


def write_learning_curve(val_log, png_path, title: str = "") -> Path:
    """Draw the curves of ``val_log`` (a val_log.csv) into ``png_path`` (written atomically); returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sets = read_val_log(val_log)
    if not sets:
        raise ValueError(f"{val_log} holds no validation rows yet")
    fig, (ax_psnr, ax_other) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, rows) in enumerate(sorted(sets.items())):
        colour = colours[k % len(colours)]
        its = [r["iteration"] for r in rows]
        ax_psnr.plot(its, [r["gain_psnr"] for r in rows], "o-", color=colour, ms=3, label=f"{name} (mean)")
        if "worst_gain_psnr" in rows[0]:
            ax_psnr.plot(its, [r["worst_gain_psnr"] for r in rows], "--", color=colour, lw=1, alpha=0.7,
                         label=f"{name} (worst image)")
        if any(not math.isnan(r.get("separation_psnr", math.nan)) for r in rows):  # logs since the tone columns
            ax_psnr.plot(its, [r.get("separation_psnr", math.nan) for r in rows], "^:", color=colour, ms=3, lw=1,
                         label=f"{name} (separation)")
        if any(not math.isnan(r.get("beyond_curve_psnr", math.nan)) for r in rows):  # logs since the curve columns
            ax_psnr.plot(its, [r.get("beyond_curve_psnr", math.nan) for r in rows], "v-.", color=colour, ms=3, lw=1,
                         label=f"{name} (beyond the tone curve)")
        if "T_ssim" in rows[0] and "I_ssim" in rows[0]:
            ax_other.plot(its, [r["T_ssim"] - r["I_ssim"] for r in rows], "o-", color=colour, ms=3,
                          label=f"{name} SSIM")
        if "T_lpips" in rows[0] and not all(math.isnan(r["T_lpips"]) for r in rows):
            ax_other.plot(its, [r["T_lpips"] - r["I_lpips"] for r in rows], "s:", color=colour, ms=3,
                          label=f"{name} LPIPS")
    for ax, label in ((ax_psnr, "T PSNR - input PSNR (dB)"), (ax_other, "T - input: SSIM (up), LPIPS (down)")):
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title + ': ' if title else ''}gain over doing nothing on the validation sets")
    fig.tight_layout()
    try:  # whole or not at all, with the temporary-file names train.py's clean-up knows
        return atomic_write(png_path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Draw a training run's learning curve (PNG) from its val_log.csv.")
    p.add_argument("val_log", help="<checkpoints_dir>/<name>/val_log.csv")
    p.add_argument("-o", "--out", default="", help="PNG to write (default: learning_curve.png beside the log)")
    p.add_argument("--title", default="", help="title prefix (default: the run's folder name)")
    args = p.parse_args(argv)
    log = Path(args.val_log)
    out = Path(args.out) if args.out else log.with_name("learning_curve.png")
    try:
        path = write_learning_curve(log, out, title=args.title or log.parent.name)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(f"wrote {path}")


if __name__ == "__main__":
    run_cli(main)
