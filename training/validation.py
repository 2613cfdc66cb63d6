"""Validation during training: every ``--val_dataroot`` folder scored as test.py scores it (``models.evaluation``),
one row per set and validation appended to ``<exp>/val_log.csv``, and the learning curve redrawn from that log."""

from __future__ import annotations

import csv
import io
from argparse import Namespace
from pathlib import Path

from data import create_test_loader, find_dataset_using_name
from data.rawrr_dataset import MissingRawFolder
from models.evaluation import evaluate
from options.base_options import experiment_dir
from util.errors import FileSystemError, UserError
from util.files import atomic_write_text
from util.learning_curve import write_learning_curve
from util.metrics import LPIPS

VAL_METRICS = ("T_psnr", "T_ssim", "T_lpips", "I_psnr", "I_ssim", "I_lpips", "R_psnr", "R_ssim", "R_lpips", "gain_psnr",
               "tone_psnr", "separation_psnr", "tone_ratio", "beyond_curve_psnr", "curve_fidelity_psnr")
# val_log.csv; the tone columns (util.tone) came last, after worst_gain_psnr, and the curve's after them, so that
# older logs extend in place
VAL_COLUMNS = ("iteration", "epoch", "set", "images", *VAL_METRICS[:10], "worst_gain_psnr", *VAL_METRICS[10:])


class Validator:
    """Validation on every ``--val_dataroot`` folder, each a set of its own, exactly as test.py scores it:
    ``models.evaluation.evaluate`` with the generator in eval mode. One row per set and validation goes to
    ``<exp>/val_log.csv`` (:data:`VAL_COLUMNS`); ``gain_psnr`` is the mean over images of T PSNR minus the input's
    PSNR (the do-nothing baseline), ``worst_gain_psnr`` the smallest of those gains, ``separation_psnr`` the part of
    the gain that the prediction's global per-channel tone does not explain (``util.tone``)."""

    def __init__(self, opt):
        self.sets: list[tuple[str, object]] = []
        roots = opt.val_dataroot if isinstance(opt.val_dataroot, list | tuple) else [opt.val_dataroot]
        for root in roots:
            val_opt = Namespace(**vars(opt))
            val_opt.dataroot, val_opt.phase = root, "test"
            val_opt.eval_resize, val_opt.num_test = opt.val_resize, opt.val_num
            try:
                dataset = find_dataset_using_name(opt.dataset_mode, "test")(val_opt)
            except MissingRawFolder as exc:  # its advice is test.py's; here --raw_source would change what trains
                raise UserError(f"--val_dataroot {root} is an RGB-only set (no *_raw folders): validation uses the "
                                "training's --raw_source (sensor); write RAW files for it with "
                                "scripts/make_rgb_only_set.py, as scripts/make_val_sets.py does") from exc
            if "T" not in getattr(dataset, "roles", {"T": None}):
                raise UserError(f"--val_dataroot {root} has no ground truth: it needs testA1_rgb (+ testA1_raw)")
            name = Path(root).name or str(root)
            taken = {n for n, _ in self.sets}
            unique, k = name, 2
            while unique in taken:
                unique, k = f"{name}_{k}", k + 1
            self.sets.append((unique, create_test_loader(val_opt, dataset)))
        self.csv_path = experiment_dir(opt) / "val_log.csv"
        self.curve_path = experiment_dir(opt) / "learning_curve.png"
        self.title = opt.name
        self.use_lpips = not getattr(opt, "val_no_lpips", False)
        self._lpips = None

    def _lpips_model(self, device):
        if self.use_lpips and self._lpips is None:
            self._lpips = LPIPS(device=device)
        return self._lpips

    def run(self, model, iteration: int, epoch: int) -> dict[str, dict]:
        """Validate ``model`` (``models.rawrr_model.RAWRRModel``) on every set; returns ``{set name: {column:
        value}}`` and appends the rows to val_log.csv."""
        net = model.netG_T
        net.eval()
        lpips_model = self._lpips_model(model.device)
        results = {}
        try:
            for name, loader in self.sets:
                rows, means = evaluate(model, loader, lpips_model, keys=VAL_METRICS)
                results[name] = {"iteration": iteration, "epoch": epoch, "set": name, "images": len(rows), **means}
        finally:
            net.train()
        new = not self.csv_path.is_file()
        if not new:
            upgrade_val_log(self.csv_path)
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(VAL_COLUMNS)
            for row in results.values():
                writer.writerow([_val_cell(row.get(c, float("nan"))) for c in VAL_COLUMNS])
        return results

    @staticmethod
    def summary_lines(results: dict[str, dict], iteration: int) -> list[str]:
        """One console line per set of :meth:`run`'s results."""
        lines = []
        for name, m in results.items():
            lp = f" LPIPS {m['T_lpips']:.4f} ({m['I_lpips']:.4f})" if "T_lpips" in m else ""
            r = f" | R {m['R_psnr']:.2f} dB" if "R_psnr" in m else ""
            sep = f", separation {m['separation_psnr']:+.2f}" if "separation_psnr" in m else ""
            if "beyond_curve_psnr" in m:
                sep += f", beyond the tone curve {m['beyond_curve_psnr']:+.2f}"
            lines.append(f"validation {name} at iteration {iteration}: T {m['T_psnr']:.2f} dB "
                         f"({m['gain_psnr']:+.2f} dB over the input, worst image {m['worst_gain_psnr']:+.2f}{sep}) "
                         f"SSIM {m['T_ssim']:.4f} ({m['I_ssim']:.4f}){lp}{r} on {m['images']} image(s)")
        return lines

    def draw_learning_curve(self) -> str | None:
        """Redraw ``learning_curve.png`` from val_log.csv; a warning line if it cannot be drawn (a figure only)."""
        try:
            write_learning_curve(self.csv_path, self.curve_path, title=self.title)
        except (OSError, ValueError, FileSystemError) as err:
            return f"warning: could not draw {self.curve_path}: {err}"
        return None


def _val_cell(value):
    return f"{value:.6f}" if isinstance(value, float) else value


def upgrade_val_log(csv_path) -> bool:
    """Rewrite a val_log.csv written with fewer columns (an older version's, resumed now) under :data:`VAL_COLUMNS`,
    its rows kept with the new columns empty; atomic. Returns whether it was rewritten. A header with columns that
    VAL_COLUMNS does not know is refused with a message naming the file."""
    path = Path(csv_path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = tuple(reader.fieldnames or ())
        if header == VAL_COLUMNS:
            return False
        if not set(header) <= set(VAL_COLUMNS) or "iteration" not in header:
            raise UserError(f"{path} has columns {', '.join(header) or '(none)'}, not a val_log.csv of this "
                            "version or an older one: move it away and resume again")
        rows = list(reader)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(VAL_COLUMNS)
    writer.writerows([row.get(c) or "" for c in VAL_COLUMNS] for row in rows)
    atomic_write_text(path, table.getvalue())
    return True


def drop_val_rows_after(csv_path, iteration: int) -> int:
    """Delete the rows of iterations after ``iteration`` from a val_log.csv (a resumed run redoes them), keeping the
    header; the file is replaced atomically. Returns the number of rows dropped."""
    path = Path(csv_path)
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines(keepends=True)

    def redone(line: str) -> bool:
        first = line.split(",", 1)[0].strip()
        return first.isdigit() and int(first) > iteration

    kept = [line for line in lines if not redone(line)]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(kept))
    return len(lines) - len(kept)
