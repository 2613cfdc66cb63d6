"""Peak memory of full-resolution reflection removal (the path of remove_reflection.py), measured.

    python -m scripts.benchmark_memory --megapixels 24 --ngf 64 --tile 512 [--device cuda] [--max_tiles 4]

Builds a photo of the requested size as a real DNG (pidng) when pidng is installed, else in memory, then runs what
``remove_reflection.py`` runs: read the RAW (rawpy), render its RGB, pack, tiled inference with the full-size network
(random weights unless ``--checkpoint``), quantise and write the transmission PNG. Prints the peak resident memory
of the process (VmHWM: everything, the PyTorch runtime included) and, on CUDA, the peak GPU memory
(``torch.cuda.max_memory_allocated``). ``--max_tiles`` stops after that many tiles (every host buffer is allocated
before the first tile and tiles are processed one at a time, so the peak is reached by then): a 24-megapixel photo
takes hours at ngf 64 on a small CPU.
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.benchmark_memory [flags]")

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_generator_weights
from models.networks import define_G
from models.tiling import DEFAULT_OVERLAP, DEFAULT_TILE, separate_tiled, tile_starts
from options.base_options import DEFAULT_NGF, DEFAULT_NUM_CAB
from util.allocator import keep_buffers_mapped
from util.help import HelpFormatter
from util.image_io import quantize
from util.measure import peak_rss_gib
from util.precision import PRECISIONS, resolve_precision, to_memory_format

ASPECT = 3 / 2  # width / height of a typical camera photo
WHITE = 4095


class StopAfter(Exception):
    pass


def photo_size(megapixels: float) -> tuple[int, int]:
    h = int(math.sqrt(megapixels * 1e6 / ASPECT)) // 2 * 2
    return h, int(h * ASPECT) // 2 * 2


def write_dng(path: Path, h: int, w: int) -> bool:
    try:  # optional: a real DNG file read by rawpy when pidng and rawpy are installed
        import rawpy  # noqa: F401
        from pidng.core import RAW2DNG, DNGTags, Tag
        from pidng.defs import CFAPattern, DNGVersion, PhotometricInterpretation
    except ImportError:
        return False
    rng = np.random.default_rng(0)
    coarse = rng.integers(200, WHITE, size=(h // 64 + 1, w // 64 + 1)).astype(np.uint16)
    mosaic = np.kron(coarse, np.ones((64, 64), np.uint16))[:h, :w]
    tags = DNGTags()
    for tag, value in ((Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.TileWidth, w), (Tag.TileLength, h),
                       (Tag.Orientation, 1),
                       (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
                       (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 16), (Tag.CFARepeatPatternDim, [2, 2]),
                       (Tag.CFAPattern, CFAPattern.RGGB), (Tag.BlackLevel, [64]), (Tag.WhiteLevel, WHITE),
                       (Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]]),
                       (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]), (Tag.DNGVersion, DNGVersion.V1_4),
                       (Tag.DNGBackwardVersion, DNGVersion.V1_2), (Tag.Make, "CR3Net"), (Tag.Model, "benchmark")):
        tags.set(tag, value)
    writer = RAW2DNG()
    writer.options(tags, path=str(path.parent), compress=False)
    writer.convert(mosaic, filename=path.stem)
    return True


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--megapixels", type=float, default=24.0, help="photo size (3:2)")
    p.add_argument("--ngf", type=int, default=DEFAULT_NGF)
    p.add_argument("--num_cab", type=int, default=DEFAULT_NUM_CAB)
    p.add_argument("--checkpoint", default="", help="generator weights (default: random weights of --ngf/--num_cab)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE)
    p.add_argument("--tile_overlap", type=int, default=DEFAULT_OVERLAP)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--max_tiles", type=int, default=0, help="stop after this many tiles (0 = the whole photo)")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    keep_buffers_mapped()  # the allocator setup of remove_reflection.py, whose memory this measures

    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)
    h, w = photo_size(args.megapixels)
    with tempfile.TemporaryDirectory() as tmp:
        dng = Path(tmp) / "photo.dng"
        t0 = time.perf_counter()
        if write_dng(dng, h, w):
            from data.camera_raw import read_camera_raw, render_rgb

            cam = read_camera_raw(dng)
            rgb_u8 = render_rgb(cam)
            packed = cam.packed()
            source = "DNG written with pidng, read with rawpy"
        else:
            rng = np.random.default_rng(0)
            rgb_u8 = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            packed = rng.random((4, h // 2, w // 2), dtype=np.float32)
            source = "in-memory arrays (pidng or rawpy not installed)"
        read_s = time.perf_counter() - t0
    net = define_G(args.ngf, args.num_cab, device=device)
    if args.checkpoint:
        load_generator_weights(net, args.checkpoint)
    net = to_memory_format(net.eval(), True)
    I_rgb = torch.from_numpy(rgb_u8).permute(2, 0, 1)[None].float().div_(255)
    del rgb_u8
    I_raw = torch.from_numpy(packed)[None]
    n_tiles = len(tile_starts(h, args.tile, args.tile_overlap)) * len(tile_starts(w, args.tile, args.tile_overlap))
    done = {"tiles": 0}
    times = []
    last = [time.perf_counter()]

    def progress(i, total):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now
        done["tiles"] = i
        print(f"  tile {i}/{total}: {times[-1]:.2f} s, peak RSS {peak_rss_gib():.2f} GB", flush=True)
        if args.max_tiles and i >= args.max_tiles:
            raise StopAfter

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    print(f"{w}x{h} ({w * h / 1e6:.1f} MP; {source}), ngf {args.ngf}, tile {args.tile}, {n_tiles} tiles, "
          f"{device}, {precision}")
    complete = True
    with torch.inference_mode():
        try:
            out = separate_tiled(net, I_rgb, I_raw, args.tile, args.tile_overlap, device, precision, True, progress)
            quantize(out["T_pred_rgb"])  # the quantisation of the saved image
        except StopAfter:
            complete = False
    result = {
        "photo": f"{w}x{h}", "megapixels": round(w * h / 1e6, 2), "source": source, "ngf": args.ngf,
        "num_cab": args.num_cab, "tile": args.tile, "tile_overlap": args.tile_overlap, "tiles_total": n_tiles,
        "tiles_run": done["tiles"], "complete": complete, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "precision": precision,
        "seconds_per_tile_median": float(np.median(times[1:] if len(times) > 1 else times)) if times else None,
        "read_seconds": round(read_s, 2), "peak_rss_gb": round(peak_rss_gib(), 3),
        "peak_gpu_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
