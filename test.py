"""Evaluate CR3Net on a RAW+RGB test set.

    python test.py --dataroot datasets --name RAW_RGB_RR --model RAWRR --dataset_mode rawrr --epoch final

Writes under ``<results_dir>/<name>/test_<epoch>/``: ``images/<stem>_{I,T,R,T_gt,R_gt}.png``, ``metrics.csv``
(one row per image), ``metrics.json`` (means, metric convention, checkpoint, versions) and ``index.html``. Where
that folder holds an earlier run, this run writes to ``test_<epoch>_2`` (``_3``, ...) instead and says so: no run
replaces or mixes with another's results. A run stopped by a bad image still writes the metrics of the images
before it (``"complete": false`` in metrics.json), then prints the one-line error.
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

from data import create_dataset, create_test_loader
from models import create_model
from models.evaluation import METRIC_COLUMNS, TONE_COLUMNS, evaluate, mean_metrics
from models.inference import describe_path
from options.test_options import TestOptions
from util.allocator import keep_buffers_mapped
from util.errors import UserError, exit_fast, file_system_error, run_cli, unwrap_worker_error
from util.files import atomic_write_text
from util.html_report import write_report
from util.image_io import write_rgb
from util.metrics import LPIPS, METRIC_CONVENTION, json_safe

# metrics.csv; metrics.json's means are of all but the stem
COLUMNS = ("stem", *METRIC_COLUMNS, *TONE_COLUMNS, "seconds")
PACKAGES = ("torch", "torchvision", "numpy", "scikit-image", "lpips", "rawpy")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def results_folder(base: Path) -> Path:
    """A folder for this run's results: ``base`` when it is new or empty, else the first new ``base_2``, ``base_3``,
    ... An earlier run's results are never replaced nor mixed with this run's; the folder is created here."""
    candidate, number = base, 1
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            if candidate.is_dir() and not any(candidate.iterdir()):
                return candidate
        except OSError as err:  # a file where a parent folder belongs, a read-only disk, ...
            raise file_system_error(err, candidate, "create") or UserError(
                f"cannot create the results folder {candidate}: {err.strerror or err}; choose another --results_dir"
            ) from None
        number += 1
        candidate = base.with_name(f"{base.name}_{number}")


def main(argv=None) -> dict:
    keep_buffers_mapped()  # large buffers stay mapped between layers (util/allocator.py)
    opt = TestOptions().parse(argv)
    torch.manual_seed(opt.seed)
    dataset = create_dataset(opt)
    loader = create_test_loader(opt, dataset)
    model = create_model(opt)
    model.setup(opt)

    base_dir = Path(opt.results_dir) / opt.name / f"test_{opt.epoch}"
    out_dir = results_folder(base_dir)
    if out_dir != base_dir:
        print(f"{base_dir} holds an earlier run's results: this run writes to {out_dir}")
    img_dir = out_dir / "images"
    lpips_model = None if opt.no_lpips else LPIPS(device=model.device)
    total = len(dataset) if opt.num_test <= 0 else min(opt.num_test, len(dataset))
    working = (f", network at about {opt.work_megapixels:g} MP (guided filter radius {opt.guide_radius}, eps "
               f"{opt.guide_eps:g})" if opt.work_megapixels else "")
    print(f"evaluating {total} image(s) from {opt.dataroot} with {model.loaded_weights} "
          f"(ngf {opt.ngf}, num_cab {opt.num_cab}) on {model.device}, "
          f"{describe_path(model.precision, model.device, model.channels_last)}, "
          f"eval_resize {opt.eval_resize}{working}, RAW from {opt.raw_source}; results in {out_dir}")

    rows = []

    def report(number: int, row: dict) -> None:
        line = f"[{number}/{total}] {row['stem']}: {row['seconds']:.2f} s"
        if "T_psnr" in row:
            line += f" | T {row['T_psnr']:.2f} dB SSIM {row['T_ssim']:.4f} (input {row['I_psnr']:.2f} dB)"
        print(line, flush=True)

    def save(stem: str, images: dict) -> dict[str, str]:
        names = {kind: f"{stem}_{kind}.png" for kind in images}
        for kind, image in images.items():
            write_rgb(img_dir / names[kind], image)
        return names

    try:
        evaluate(model, loader, lpips_model, limit=total, save=save, rows=rows, on_row=report)
    except BaseException as err:  # keep what was computed: the metrics of the images done so far, then the error
        if rows:
            reason = str(unwrap_worker_error(err)) if isinstance(err, UserError) else (str(err) or type(err).__name__)
            try:
                write_results(opt, model, out_dir, rows, total, error=reason)
                print(f"stopped after {len(rows)} of {total} image(s); their metrics are in {out_dir}", file=sys.stderr)
            except Exception as write_err:  # the original error matters more
                print(f"(could not save the partial results: {write_err})", file=sys.stderr)
        raise
    return write_results(opt, model, out_dir, rows, total)


def write_results(opt, model, out_dir: Path, rows: list[dict], total: int, error: str | None = None) -> dict:
    """metrics.csv, metrics.json and index.html of ``rows``; ``error``: why the run stopped early (then
    ``metrics.json`` says ``"complete": false`` and the page says so)."""
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_csv(row.get(c)) for c in COLUMNS])
    atomic_write_text(out_dir / "metrics.csv", table.getvalue())
    means = mean_metrics(rows, COLUMNS[1:])
    summary = {
        "name": opt.name,
        "epoch": opt.epoch,
        "checkpoint": str(model.loaded_weights),
        "dataroot": str(opt.dataroot),
        "results": str(out_dir),
        "num_images": len(rows),
        "complete": error is None,
        "ngf": opt.ngf,
        "num_cab": opt.num_cab,
        "eval_resize": opt.eval_resize,
        "work_megapixels": getattr(opt, "work_megapixels", 0.0),
        "raw_source": opt.raw_source,
        "device": str(model.device),
        "precision": model.precision,
        "compile": bool(getattr(opt, "compile", False)),
        "means": means,
        "metric_convention": {**METRIC_CONVENTION,
                              "rows": "T_* = predicted T vs ground-truth T; R_* = predicted R vs ground-truth R; "
                              "I_* = input I vs ground-truth T (do-nothing baseline); tone_psnr = the input times the "
                              "prediction's per-channel gain mean(T)/mean(I) vs ground-truth T (util.tone), "
                              "separation_psnr = T_psnr - tone_psnr, tone_ratio = mean(T)/mean(I); "
                              "beyond_curve_psnr = T_psnr minus the PSNR of the input through the prediction's own "
                              "least-squares per-channel tone curve (util.tone.curve_scores), curve_fidelity_psnr = "
                              "PSNR between the prediction and that curve of the input"},
        "versions": package_versions(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if error is not None:
        summary["error"] = f"stopped after {len(rows)} of {total} image(s): {error}"
    atomic_write_text(out_dir / "metrics.json", json.dumps(json_safe(summary), indent=2) + "\n")
    header = [f"checkpoint {model.loaded_weights} (ngf {opt.ngf}, num_cab {opt.num_cab}), data {opt.dataroot}, "
              f"eval_resize {opt.eval_resize}, RAW input from {opt.raw_source}, {len(rows)} image(s)",
              "Metrics on the 8-bit images shown: PSNR/SSIM scikit-image (data_range 255, RGB), LPIPS AlexNet v0.1."]
    if error is not None:
        header.insert(0, f"INCOMPLETE: {summary['error']}")
    write_report(out_dir / "index.html", f"CR3Net: {opt.name}, epoch {opt.epoch}", rows, means, header)
    if error is None:
        print_summary(means, len(rows), out_dir)
    return summary


def _csv(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.6f}")
    return value


def print_summary(means: dict, n: int, out_dir: Path) -> None:
    print(f"\n{'':28s}{'PSNR':>9s}{'SSIM':>9s}{'LPIPS':>9s}")
    for key, label in (("T", "T (prediction)"), ("R", "R (prediction)"), ("I", "I (do nothing, vs T)")):
        if f"{key}_psnr" in means:
            lp = means.get(f"{key}_lpips")
            print(f"{label:28s}{means[f'{key}_psnr']:9.2f}{means[f'{key}_ssim']:9.4f}"
                  f"{(f'{lp:9.4f}' if lp is not None else '        -')}")
    if "tone_psnr" in means and "separation_psnr" in means:
        print(f"{'tone of T on I':28s}{means['tone_psnr']:9.2f}   separation (T - tone) "
              f"{means['separation_psnr']:+.2f} dB; T/I {means.get('tone_ratio', float('nan')):.3f}")
    if "beyond_curve_psnr" in means and "curve_fidelity_psnr" in means:
        print(f"{'tone curve of T on I':28s}   beyond the curve {means['beyond_curve_psnr']:+.2f} dB; T is "
              f"{means['curve_fidelity_psnr']:.1f} dB from that curve of I")
    if "seconds" in means:
        print(f"{n} image(s), {means['seconds']:.2f} s per image; results in {out_dir}")


if __name__ == "__main__":
    run_cli(main)  # main returns the means (for callers in Python), not an exit status
    exit_fast(0)
