"""Measure how ``remove_reflection.py --raw_out`` should form the DNG's mosaic (``--raw_mosaic``), on real RAW files.

    python -m scripts.measure_dng_modes                                    # ../shared/data/raw, the demo checkpoint
    python -m scripts.measure_dng_modes PHOTO.NEF ... --checkpoint checkpoints/RAW_RGB_RR/final_net_G_T.pth \
        --gpu_ids 0 --json dng_modes.json

For each photo (RGB rendered from the RAW, as remove_reflection.py does without a JPEG) and each network, the network
runs once; then every mode of :data:`data.raw_out.RAW_MOSAIC_MODES` forms a mosaic, writes it as a DNG and LibRaw
renders it back (:func:`data.camera_raw.render_rgb`, the rendering the network's input comes from). Two networks:

* the checkpoint: ``PSNR(render(DNG), T)`` (dB, 8-bit, sensor orientation): how closely the photographer's RAW
  shows what the project shows as T, the network's final result;
* :class:`models.inference.IdentityNet`, which removes nothing: the DNG must then be the input RAW. Reported: how many
  sites of the mosaic changed, the largest change in sensor counts, and ``PSNR(render(DNG), I)``.

Prints a Markdown table for the README; ``--json`` also writes the numbers. The DNGs go to a temporary folder
(``--keep`` keeps them in ``--out``).
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.measure_dng_modes [flags]")

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from data.camera_raw import is_camera_raw, read_camera_raw, render_rgb
from data.raw_out import RAW_MOSAIC_MODES, reflection_free_mosaic, write_reflection_free_dng
from models.inference import IdentityNet
from models.tiling import DEFAULT_OVERLAP, DEFAULT_TILE, check_tiling, separate_tiled
from options.base_options import resolve_device
from remove_reflection import DEFAULT_CHECKPOINT, load_network
from util.dng import read_source_metadata
from util.errors import UserError, run_cli
from util.help import HelpFormatter
from util.image_io import to_uint8
from util.metrics import json_safe, psnr
from util.precision import PRECISIONS, resolve_precision, to_memory_format

DEFAULT_RAW_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("photos", nargs="*", help=f"camera RAW files (default: every RAW file in {DEFAULT_RAW_DIR})")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="generator weights")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile size (as remove_reflection.py)")
    p.add_argument("--tile_overlap", type=int, default=None, help=f"tile overlap (default {DEFAULT_OVERLAP})")
    p.add_argument("--gpu_ids", default="", help="GPU id; -1 = CPU; default: GPU 0 when there is one")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    p.add_argument("--out", default=None, help="folder for the DNGs with --keep (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the DNGs (in --out)")
    args = p.parse_args(argv)
    args.tile_overlap = check_tiling(args.tile, args.tile_overlap)
    if args.keep and not args.out:
        raise UserError("--keep needs --out FOLDER for the DNGs")
    return args


def measure_photo(path: Path, nets: dict, args, device, precision, folder: Path) -> list[dict]:
    raw = read_camera_raw(path)
    rgb_u8 = render_rgb(raw)
    I_rgb = torch.from_numpy(rgb_u8).permute(2, 0, 1)[None].float().div_(255)
    I_raw = torch.from_numpy(raw.packed())[None]
    source = read_source_metadata(raw.path, raw.size)
    rows = []
    for net_name, net in nets.items():
        with torch.inference_mode():
            out = separate_tiled(net, I_rgb, I_raw, args.tile, args.tile_overlap, device, precision, True)
        reference = rgb_u8 if net_name == "identity" else to_uint8(out["T_pred_rgb"])
        for mode in RAW_MOSAIC_MODES:
            start = time.perf_counter()
            mosaic = reflection_free_mosaic(raw, I_rgb, out, mode, source.render_matrix)
            dng = write_reflection_free_dng(folder / f"{path.stem}_{net_name}_{mode}.dng", raw, mosaic, source,
                                            f"{path.name}: scripts/measure_dng_modes.py, {net_name}, {mode}")
            seconds = time.perf_counter() - start
            change = np.abs(mosaic.astype(np.int64) - raw.mosaic.astype(np.int64))
            row = {"photo": path.name, "size": list(raw.size), "network": net_name, "mode": mode,
                   "render_psnr_db": psnr(reference, render_rgb(dng)), "seconds": round(seconds, 2),
                   "sites_changed": int(np.count_nonzero(change)), "max_change_counts": int(change.max())}
            rows.append(row)
            print(f"  {path.name} {net_name:10s} {mode:12s} PSNR(render(DNG), {'I' if net_name == 'identity' else 'T'})"
                  f" = {row['render_psnr_db']:.2f} dB, {row['sites_changed']} sites changed, max "
                  f"{row['max_change_counts']} counts [{seconds:.1f} s]")
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| photo | network | `--raw_mosaic` | PSNR(render(DNG), T) dB | sites changed | max change (counts) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['photo']} | {r['network']} | {r['mode']} | {r['render_psnr_db']:.2f} | "
                     f"{r['sites_changed']} | {r['max_change_counts']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    photos = [Path(p) for p in args.photos]
    if not photos:
        if not DEFAULT_RAW_DIR.is_dir():
            raise UserError(f"{DEFAULT_RAW_DIR} does not exist; give RAW files on the command line")
        photos = sorted(p for p in DEFAULT_RAW_DIR.iterdir() if is_camera_raw(p))
    _, device = resolve_device(args.gpu_ids)
    precision = resolve_precision(args.precision, device)
    if not Path(args.checkpoint).is_file():
        raise UserError(f"no weights at {args.checkpoint}; pass --checkpoint PATH to a CR3Net generator (.pth)")
    net, ngf, num_cab = load_network(args.checkpoint, device)
    nets = {"checkpoint": to_memory_format(net, True), "identity": IdentityNet().to(device)}
    print(f"{len(photos)} photo(s); weights {args.checkpoint} (ngf {ngf}, num_cab {num_cab}); {device}, {precision}")
    folder = Path(args.out) if args.keep else Path(tempfile.mkdtemp(prefix="dng_modes_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        rows = [row for path in photos for row in measure_photo(path, nets, args, device, precision, folder)]
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print()
    print(f"checkpoint: {args.checkpoint} (ngf {ngf}, num_cab {num_cab}); identity: IdentityNet (removes nothing, so "
          "the reference is I); render = data.camera_raw.render_rgb (LibRaw)")
    print(markdown(rows))
    if args.json:
        meta = {"checkpoint": str(args.checkpoint), "ngf": ngf, "num_cab": num_cab, "device": str(device),
                "precision": precision, "tile": args.tile, "python": platform.python_version(),
                "torch": torch.__version__}
        Path(args.json).write_text(json.dumps(json_safe({"meta": meta, "rows": rows}), indent=2), encoding="utf-8")
        print(f"numbers: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
