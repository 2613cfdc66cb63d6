"""Evaluate CR3Net on a RAW+RGB test set.

    python test.py --dataroot datasets --name RAW_RGB_RR --model RAWRR --dataset_mode rawrr --epoch final

Writes under ``<results_dir>/<name>/test_<epoch>/``: ``images/<stem>_{I,T,R,T_gt,R_gt}.png``, ``metrics.csv``
(one row per image), ``metrics.json`` (means, metric convention, checkpoint, versions) and ``index.html``.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from importlib import metadata
from pathlib import Path

import torch

from data import create_dataset, create_test_loader
from data.image_io import write_rgb
from models import create_model
from options.test_options import TestOptions
from util.errors import run_cli
from util.html_report import write_report
from util.metrics import LPIPS, METRIC_CONVENTION, json_safe, mean_rows, score_separation, to_uint8

METRICS = ("psnr", "ssim", "lpips")
PACKAGES = ("torch", "torchvision", "numpy", "scikit-image", "lpips", "rawpy")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def main(argv=None) -> dict:
    opt = TestOptions().parse(argv)
    torch.manual_seed(opt.seed)
    dataset = create_dataset(opt)
    loader = create_test_loader(opt, dataset)
    model = create_model(opt)
    model.setup(opt)

    out_dir = Path(opt.results_dir) / opt.name / f"test_{opt.epoch}"
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    lpips_model = None if opt.no_lpips else LPIPS(device=model.device)
    total = len(dataset) if opt.num_test <= 0 else min(opt.num_test, len(dataset))
    print(f"evaluating {total} image(s) from {opt.dataroot} with {model.loaded_weights} "
          f"(ngf {opt.ngf}, num_cab {opt.num_cab}) on {model.device}, precision {model.precision}, "
          f"eval_resize {opt.eval_resize}")

    rows = []
    for i, batch in enumerate(loader):
        if i >= total:
            break
        stem = batch["stem"][0]
        model.set_input(batch)
        visuals = model.test()
        saved = {"I": to_uint8(visuals["I_rgb"]), "T": to_uint8(visuals["T_rgb"]), "R": to_uint8(visuals["R_rgb"])}
        for kind in ("T", "R"):
            if f"{kind}_gt_rgb" in visuals:
                saved[f"{kind}_gt"] = to_uint8(visuals[f"{kind}_gt_rgb"])
        names = {}
        for kind, image in saved.items():
            names[kind] = f"{stem}_{kind}.png"
            write_rgb(img_dir / names[kind], image)
        row = {"stem": stem, "seconds": model.inference_seconds, "images": names}
        row.update(score_separation(saved, lpips_model))  # on the 8-bit images exactly as written (PNG is lossless)
        rows.append(row)
        line = f"[{i + 1}/{total}] {stem}: {row['seconds']:.2f} s"
        if "T_psnr" in row:
            line += f" | T {row['T_psnr']:.2f} dB SSIM {row['T_ssim']:.4f} (input {row['I_psnr']:.2f} dB)"
        print(line, flush=True)

    columns = ["stem"] + [f"{k}_{m}" for k in ("T", "R", "I") for m in METRICS] + ["seconds"]
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv(row.get(c)) for c in columns])
    means = mean_rows(rows, columns[1:])
    summary = {
        "name": opt.name,
        "epoch": opt.epoch,
        "checkpoint": str(model.loaded_weights),
        "dataroot": str(opt.dataroot),
        "num_images": len(rows),
        "ngf": opt.ngf,
        "num_cab": opt.num_cab,
        "eval_resize": opt.eval_resize,
        "device": str(model.device),
        "precision": model.precision,
        "means": means,
        "metric_convention": {**METRIC_CONVENTION,
                              "rows": "T_* = predicted T vs ground-truth T; R_* = predicted R vs ground-truth R; "
                              "I_* = input I vs ground-truth T (do-nothing baseline)"},
        "versions": package_versions(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (out_dir / "metrics.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    header = [f"checkpoint {model.loaded_weights} (ngf {opt.ngf}, num_cab {opt.num_cab}), data {opt.dataroot}, "
              f"eval_resize {opt.eval_resize}, {len(rows)} image(s)",
              "Metrics on the 8-bit images shown: PSNR/SSIM scikit-image (data_range 255, RGB), LPIPS AlexNet v0.1."]
    write_report(out_dir / "index.html", f"CR3Net: {opt.name}, epoch {opt.epoch}", rows, means, header)
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
    if "seconds" in means:
        print(f"{n} image(s), {means['seconds']:.2f} s per image; results in {out_dir}")


if __name__ == "__main__":
    run_cli(main)
