"""Remove reflections from your own photos: camera RAW files (with or without the camera's JPEGs), full resolution.

    python remove_reflection.py PHOTO.dng [PHOTO.jpg] -o OUT_DIR
    python remove_reflection.py PHONE.jpg -o OUT_DIR           # no RAW: the RAW input is made from the JPEG
    python remove_reflection.py FOLDER -o OUT_DIR --save_reflection
    python remove_reflection.py FOLDER -o OUT_DIR --raw_out --format tiff16 --page     # for a RAW developer
    python remove_reflection.py FOLDER -o OUT_DIR --work_megapixels 2      # fast: the network at about 2 megapixels

For each RAW file the RGB side is the camera's JPEG beside it (same stem: x.NEF + x.JPG) or given right after it,
else an sRGB rendering of the RAW itself (camera white balance, no auto-brightness). A photo without a RAW file (an
RGB image given alone, not right after a RAW; in a folder, an RGB image of a stem that no RAW file has) runs as the
RGB-only twin: the network's RAW input is made from the image by the fixed inverse ISP of :mod:`data.pseudo_raw`.
A folder leaves out files named as results (``*_T.*``, ``*_R.*``), with a note. Writes
``<stem>_T.png`` (and ``<stem>_R.png`` with ``--save_reflection``) at the photo's full resolution and viewing
orientation; ``--format jpg`` or ``tiff16`` (16-bit TIFF of the float result, ``<stem>_T.tif``) instead.
``--raw_out`` adds ``<stem>_T.dng``: the photo's own RAW with the reflection removed, with its metadata, for a RAW
developer (:mod:`data.raw_out`). ``--page`` adds ``index.html``: each photo beside its result (and its reflection),
as previews in ``previews/`` that link to the full files. The network runs at full resolution in tiles, or with
``--work_megapixels MP`` on the photo scaled down to about MP megapixels, its result carried to full resolution by
a guided filter (:mod:`models.work_resolution`): minutes instead of hours for a large photo on a CPU.

Nothing is overwritten by surprise: output names are planned before any inference; photos that share a name
(``a/x.NEF b/x.NEF``, ``x.KDC x.kdc``) get ``x_T``, ``x-2_T``, ... (printed); a file of those names (results, DNGs,
previews, ``index.html``) already in the output folder stops the run before it starts unless ``--overwrite`` is
given, and an input is never overwritten.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from data.camera_raw import (
    apply_orientation,
    is_camera_raw,
    load_jpeg_partner,
    read_camera_raw,
    render_rgb,
)
from data.pseudo_raw import pseudo_packed_raw
from data.raw_out import (
    DEFAULT_RAW_MOSAIC,
    MODES_USING_T_PRED_RAW,
    RAW_MOSAIC_MODES,
    reflection_free_mosaic,
    write_reflection_free_dng,
)
from models.checkpoint import infer_generator_shape, load_generator_weights, load_state_dict_file
from models.inference import describe_path
from models.networks import define_G
from models.tiling import DEFAULT_OVERLAP, DEFAULT_TILE, check_tiling, separate_tiled
from models.work_resolution import check_work_resolution, separate_at_work_resolution, work_size
from options.base_options import add_compile_flag, add_work_resolution_flags, resolve_device
from util.allocator import keep_buffers_mapped
from util.dng import check_dng_writer, read_source_metadata, shot_exif
from util.errors import FileSystemError, UserError, exit_fast, file_system_error, run_cli, unwrap_worker_error
from util.files import link_problem
from util.help import HelpFormatter
from util.html_report import make_preview, write_before_after
from util.image_io import (
    RGB_EXTENSIONS,
    EmbeddedMetadata,
    embedded_metadata,
    extra_frames,
    is_srgb_profile,
    read_photo,
    to_uint8,
    to_uint16,
    write_rgb,
    write_rgb16,
)
from util.precision import (
    PRECISIONS,
    add_memory_format_flags,
    maybe_compile,
    resolve_channels_last,
    resolve_precision,
    to_memory_format,
)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "demo" / "final_net_G_T.pth"
JPEG_EXTENSIONS = (".jpg", ".jpeg")
RESULT_STEM_SUFFIXES = ("_T", "_R")  # the results' names: <stem>_T.<ext>, <stem>_R.<ext> (job_outputs)
JPEG_QUALITY_RANGE = (1, 100)  # Pillow's JPEG quality scale
FORMAT_EXTENSIONS = {"png": "png", "jpg": "jpg", "tiff16": "tif"}  # --format -> file extension of the results
PAGE_NAME = "index.html"  # --page: the before/after page in the output folder
PREVIEW_DIR = "previews"  # its previews, <name>_I.jpg, <name>_T.jpg, <name>_R.jpg
DEFAULT_PREVIEW_SIZE = 1024  # long side of a preview (px): a page of 24-megapixel photos stays light
MIN_PREVIEW_SIZE = 16
PREVIEW_QUALITY = 90  # JPEG quality of the previews


@dataclass
class Job:
    raw: Path | None  # the camera RAW; None = an RGB photo alone (its RAW input made by the inverse ISP)
    rgb: Path | None  # the camera's JPEG (or another RGB file of the same photo); None = render from the RAW
    name: str = ""  # output name stem: the photo's stem, or <stem>-2, ... where photos share one (plan_outputs)

    @property
    def photo(self) -> Path:
        """The file that names this photo: its RAW, else its RGB image."""
        return self.raw if self.raw is not None else self.rgb


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    p.add_argument("inputs", nargs="+", metavar="PATH",
                   help="camera RAW files (DNG, NEF, CR2, CR3, ARW, ORF, RW2, PEF, ...), each optionally followed by "
                   "its JPEG; JPEGs (or other RGB images: PNG, TIFF, ..., 8 or 16 bits) without a RAW; and/or "
                   "folders of them")
    p.add_argument("-o", "--out_dir", required=True, help="folder for the results")
    p.add_argument("--save_reflection", action="store_true", help="also write the reflection <stem>_R")
    p.add_argument("--format", default="png", choices=tuple(FORMAT_EXTENSIONS),
                   help="results: png or jpg (8-bit), or tiff16 (16-bit TIFF of the float result, <stem>_T.tif)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality with --format jpg (1..100)")
    p.add_argument("--raw_out", action="store_true",
                   help="also write <stem>_T.dng: the photo's RAW mosaic without the reflection, with the photo's "
                   "metadata, for a RAW developer")
    p.add_argument("--raw_mosaic", default=None, choices=RAW_MOSAIC_MODES,
                   help=f"how --raw_out forms the mosaic (default {DEFAULT_RAW_MOSAIC}: the original mosaic times the "
                   "gain T/I; see README)")
    p.add_argument("--page", action="store_true",
                   help=f"also write {PAGE_NAME}: each photo beside its result, previews in {PREVIEW_DIR}/ linking to "
                   "the full files")
    p.add_argument("--preview_size", type=int, default=None,
                   help=f"long side of the --page previews in pixels (default {DEFAULT_PREVIEW_SIZE})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace results of an earlier run in the output folder (default: refuse before starting)")
    g = p.add_argument_group("network")
    g.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                   help="generator weights (any CR3Net width; e.g. checkpoints/RAW_RGB_RR/final_net_G_T.pth)")
    g.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help="tile size in RGB pixels (multiple of 8): memory is bounded by the tile; 0 = whole photo")
    g.add_argument("--tile_overlap", type=int, default=None,
                   help=f"overlap between tiles in RGB pixels (even; default {DEFAULT_OVERLAP}, at most half the tile)")
    g.add_argument("--gpu_ids", default="", help="GPU id (e.g. 0); -1 = CPU; default: GPU 0 when there is one")
    g.add_argument("--precision", default="auto", choices=PRECISIONS, help="autocast precision (see README)")
    add_memory_format_flags(g)
    add_compile_flag(g)
    g = p.add_argument_group("working resolution (fast full-resolution results)")
    add_work_resolution_flags(g, "run the network on the photo scaled down to about MP megapixels and carry its result "
                              "to full resolution with a guided filter (e.g. 2; --tile then applies to the working "
                              "image); 0 = the network at full resolution")
    args = p.parse_args(argv)
    low, high = JPEG_QUALITY_RANGE
    if not low <= args.quality <= high:
        raise UserError(f"--quality {args.quality} is outside {low}..{high} (JPEG quality; 95 is visually lossless)")
    args.tile_overlap = check_tiling(args.tile, args.tile_overlap)
    args.guide_radius, args.guide_eps = check_work_resolution(args.work_megapixels, args.guide_radius, args.guide_eps)
    if args.raw_mosaic is not None and not args.raw_out:
        raise UserError(f"--raw_mosaic {args.raw_mosaic} applies to --raw_out only; add --raw_out or drop it")
    if args.preview_size is not None and not args.page:
        raise UserError(f"--preview_size {args.preview_size} applies to --page only; add --page or drop it")
    if args.preview_size is not None and args.preview_size < MIN_PREVIEW_SIZE:
        raise UserError(f"--preview_size {args.preview_size} is below {MIN_PREVIEW_SIZE} pixels; e.g. "
                        f"{DEFAULT_PREVIEW_SIZE}")
    if args.raw_out:
        check_dng_writer()
        args.raw_mosaic = args.raw_mosaic or DEFAULT_RAW_MOSAIC
    if args.page:
        args.preview_size = args.preview_size or DEFAULT_PREVIEW_SIZE
    return args


def collect_jobs(inputs) -> list[Job]:
    """RAW files (with an optional JPEG right after each), RGB photos without a RAW, and folders -> jobs, in the
    order given.

    A RAW without a JPEG given after it takes the JPEG of its stem beside it (``x.NEF`` + ``x.JPG``; two such JPEGs are
    an error). An RGB image right after a RAW file is that RAW's JPEG; anywhere else it is a photo of its own, run
    with a RAW made from it (the RGB-only twin). A folder gives its RAW files and the RGB images (JPEG, PNG, TIFF, ...)
    of other stems (:func:`folder_jobs`).
    """
    jobs: list[Job] = []
    raw_args: list[Job] = []  # RAW files given as files: their JPEG is looked up beside them unless one follows
    after_raw = False  # the previous argument was a RAW file that has no RGB image given after it yet
    for arg in inputs:
        path = Path(arg)
        raw_file = False
        if path.is_dir():
            jobs.extend(folder_jobs(path))
        elif not path.exists():
            raise UserError(f"{path} does not exist")
        elif is_camera_raw(path):
            jobs.append(Job(path, None))
            raw_args.append(jobs[-1])
            raw_file = True
        elif path.suffix.lower() in RGB_EXTENSIONS:
            if after_raw:
                jobs[-1].rgb = path
            else:
                jobs.append(Job(None, path))
        else:
            raise UserError(f"{path}: unsupported file type {path.suffix!r}; expected a camera RAW file, an RGB "
                            "photo (JPEG, PNG, TIFF, ...) or a folder")
        after_raw = raw_file
    for job in raw_args:
        if job.rgb is None:
            job.rgb = jpeg_of(job.raw)
    return jobs


def jpeg_of(raw: Path, entries: list[Path] | None = None) -> Path | None:
    """The camera JPEG beside ``raw``: the visible JPEG of its stem in its folder (``x.NEF`` + ``x.JPG``; ``entries``:
    that folder's entries where the caller has listed them), or None. Two of them, or one that is not a readable
    file, are an error naming them; other files of the folder are not looked at (an unrelated ``a.jpg`` +
    ``a.jpeg``, or a subfolder named like a JPEG, do not stop the RAW)."""
    if entries is None:
        entries = sorted(raw.parent.iterdir())
    found = [p for p in entries
             if p.stem == raw.stem and p.suffix.lower() in JPEG_EXTENSIONS and not p.name.startswith(".")]
    for path in found:
        if not path.is_file():
            raise UserError(link_problem(path) or f"{path} is not a JPEG file but has the name of the camera JPEG of "
                            f"{raw.name}; rename it, or give the RAW's JPEG after it ({raw.name} X.jpg)")
    if len(found) > 1:
        raise UserError(f"{found[0]} and {found[1].name} are both JPEGs of the stem of {raw.name}; keep one, or give "
                        f"the RAW's JPEG after it ({raw.name} {found[0].name})")
    return found[0] if found else None


def is_photo_file(path: Path) -> bool:
    """A camera RAW file or an RGB image, by its suffix (the file is not opened)."""
    return is_camera_raw(path) or path.suffix.lower() in RGB_EXTENSIONS


def is_earlier_result(path: Path) -> bool:
    """A name this tool gives its results (``<stem>_T.png``, ``<stem>_R.jpg``, ``<stem>_T.dng``, ...)."""
    return path.stem.endswith(RESULT_STEM_SUFFIXES)


def listed(paths: list[Path], shown: int = 3) -> str:
    names = ", ".join(p.name for p in paths[:shown])
    return names + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


def folder_jobs(folder: Path) -> list[Job]:
    """The photos of one folder (not its subfolders): each camera RAW file with the JPEG of its stem, then every RGB
    image (JPEG, PNG, TIFF, BMP, WebP) of a stem that no RAW file has, as a photo of its own. Left out, with a note:
    files named as this tool's results (``*_T.*``, ``*_R.*``: a run may have written into the folder; given as files
    they are processed), other RGB files of a RAW file's stem (``x.tif`` beside ``x.NEF``: the same photo), and files
    that are neither RAW nor RGB images (sidecars, notes). A folder left with no photo is an error."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file()]
    results = [p for p in files if is_earlier_result(p) and is_photo_file(p)]
    raws = [p for p in files if is_camera_raw(p) and p not in results]
    images = [p for p in files if p.suffix.lower() in RGB_EXTENSIONS and p not in results]
    raw_stems = {r.stem: r for r in raws}
    jpeg = {raw: jpeg_of(raw, entries) for raw in raws}  # two JPEGs of a RAW's stem: an error
    partners = set(jpeg.values()) - {None}
    same_photo = [p for p in images if p.stem in raw_stems and p not in partners]
    alone = [p for p in images if p.stem not in raw_stems]
    other = [p for p in files if not is_photo_file(p)]
    if results:
        print(f"note: {folder}: left out {len(results)} file(s) named as results of this tool ({listed(results)}); "
              "give them as files to process them")
    for image in same_photo:
        print(f"note: {folder}: left out {image.name}: the RAW file {raw_stems[image.stem].name} of its stem is that "
              "photo (give the image after the RAW file to use it as the RAW's RGB side)")
    if other:
        print(f"note: {folder}: left out {len(other)} file(s) that are neither camera RAW files nor RGB images "
              f"({listed(other)})")
    if not raws and not alone:
        subfolders = [p for p in entries if p.is_dir()]
        hint = (f"; subfolders are not searched: give them (e.g. {subfolders[0]}"
                f"{f' and {len(subfolders) - 1} more' if len(subfolders) > 1 else ''})" if subfolders else "")
        raise UserError(f"folder {folder} holds no photo: no camera RAW file (DNG, NEF, CR2, CR3, ARW, ...) and no RGB "
                        f"image (JPEG, PNG, TIFF, ...) other than results of this tool{hint}")
    return [Job(r, jpeg[r]) for r in raws] + [Job(None, p) for p in alone]


def check_jobs(jobs: list[Job], args) -> None:
    """Refuse, before any inference, what a photo without a RAW file cannot give (``--raw_out``)."""
    if args.raw_out:
        alone = [job.rgb for job in jobs if job.raw is None]
        if alone:
            more = f" and {len(alone) - 1} more" if len(alone) > 1 else ""
            raise UserError(f"--raw_out writes the photo's own RAW without the reflection, and {alone[0]}{more} has "
                            "no RAW file; give its RAW file (PHOTO.dng PHOTO.jpg) or drop --raw_out")


def result_kinds(args) -> tuple[str, ...]:
    return ("T", "R") if args.save_reflection else ("T",)


def job_outputs(out_dir: Path, job: Job, args) -> dict[str, Path]:
    """Every file this run writes for ``job``, by kind: ``T`` and ``R`` (results, ``--format``), ``T_dng``
    (``--raw_out``), ``preview_I``, ``preview_T``, ``preview_R`` (``--page``)."""
    name = job.name or job.photo.stem
    ext = FORMAT_EXTENSIONS[args.format]
    files = {kind: out_dir / f"{name}_{kind}.{ext}" for kind in result_kinds(args)}
    if args.raw_out:
        files["T_dng"] = out_dir / f"{name}_T.dng"
    if args.page:
        for kind in ("I", *result_kinds(args)):
            files[f"preview_{kind}"] = out_dir / PREVIEW_DIR / f"{name}_{kind}.jpg"
    return files


def plan_outputs(jobs: list[Job], out_dir: Path, args) -> None:
    """Give every job a distinct output name and check the output folder, before any inference.

    Photos that share a stem (``a/x.NEF b/x.NEF``; ``x.KDC x.kdc``; ``X.dng x.dng`` on a case-insensitive disk)
    keep it for the first and get ``<stem>-2``, ``-3``, ... for the others (printed). Refused (``UserError``): the
    same photo twice, ``-o`` naming a file, an output name that is a folder or one of the inputs, a file where an output
    folder (``previews/``) goes, and, without ``args.overwrite``, any output name (:func:`job_outputs`, the page)
    that already exists in ``out_dir``. Creates ``out_dir``.
    """
    seen: dict[Path, Path] = {}
    for job in jobs:
        key = job.photo.resolve()
        if key in seen:
            raise UserError(f"{job.photo} is given twice (also as {seen[key]}); give each photo once")
        seen[key] = job.photo
    taken = {job.photo.stem.casefold() for job in jobs}
    first_with: dict[str, Job] = {}
    for job in jobs:
        stem = job.photo.stem
        if stem.casefold() not in first_with:
            first_with[stem.casefold()] = job
            job.name = stem
            continue
        number = 2
        while f"{stem}-{number}".casefold() in taken:
            number += 1
        job.name = f"{stem}-{number}"
        taken.add(job.name.casefold())
        print(f"note: {first_with[stem.casefold()].photo} and {job.photo} share the name {stem}: the results of "
              f"{job.photo} are named {job.name}_*")

    problem = link_problem(out_dir)
    if problem:
        raise UserError(f"-o {problem}")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o {out_dir} is a file, not a folder; give a folder for the results")
    preview_dir = out_dir / PREVIEW_DIR
    if args.page and os.path.lexists(preview_dir) and not preview_dir.is_dir():
        raise UserError(f"{preview_dir} is a file where this run would make its folder of previews; move it or choose "
                        "another -o")
    inputs = [p for job in jobs for p in (job.raw, job.rgb) if p is not None]
    planned = [path for job in jobs for path in job_outputs(out_dir, job, args).values()]
    if args.page:
        planned.append(out_dir / PAGE_NAME)
    existing = []
    for path in planned:
        if not os.path.lexists(path):
            continue
        if path.is_dir():
            raise UserError(f"{path} is a folder where this run would write a result; move it or choose another -o")
        if any(path.resolve() == p.resolve() for p in inputs):
            raise UserError(f"{path} is an input of this run and would be overwritten; choose another -o")
        existing.append(path)
    if existing and not args.overwrite:
        more = f" and {len(existing) - 1} more result file(s)" if len(existing) > 1 else ""
        raise UserError(f"{existing[0]}{more} already exist(s) in {out_dir}: choose another -o, move them away, or "
                        "pass --overwrite to replace them")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise file_system_error(err, out_dir, "create") or UserError(
            f"cannot create the output folder {out_dir}: {err.strerror or err}; choose another -o"
        ) from None


def load_network(checkpoint, device):
    state = load_state_dict_file(checkpoint)
    ngf, num_cab = infer_generator_shape(state, checkpoint)
    net = define_G(ngf=ngf, num_cab=num_cab, device=device)
    load_generator_weights(net, checkpoint)
    return net.eval(), ngf, num_cab


def save_image(path: Path, rgb_u8: np.ndarray, fmt: str, quality: int,
               metadata: EmbeddedMetadata | None = None) -> None:
    """Write one 8-bit result, whole or not at all (a full disk is one line naming ``path``), with the input's ICC
    colour profile and EXIF where it has them."""
    options = metadata.save_options() if metadata is not None else {}
    if fmt == "jpg":
        write_rgb(path, rgb_u8, quality=quality, subsampling=0, **options)
    else:
        write_rgb(path, rgb_u8, **options)


@dataclass
class PhotoResult:
    job: Job
    files: dict[str, Path]  # what was written, by kind (job_outputs)
    size: tuple[int, int]  # (width, height) of the results, viewing orientation
    seconds: dict[str, float]  # wall time of each stage: read (RAW, RGB), remove (the network and upsampling), write


def rgb_only_inputs(I_rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's inputs for an RGB photo without a RAW file, ``I_rgb`` (1, 3, H, W): the image and the packed RAW
    made from it by the fixed inverse ISP (:func:`data.pseudo_raw.pseudo_packed_raw`, as for RGB-only pairs in
    training and evaluation), (1, 4, H'/2, W'/2). An odd height or width is padded by one repeated row or column (a
    Bayer mosaic is even); the caller crops the results back to (H, W)."""
    h, w = I_rgb.shape[-2:]
    if h % 2 or w % 2:
        I_rgb = F.pad(I_rgb, (0, w % 2, 0, h % 2), mode="replicate")
    return I_rgb, pseudo_packed_raw(I_rgb[0])[None]


def process(job: Job, net, args, device, precision, channels_last, out_dir: Path, network: str) -> PhotoResult:
    start = time.perf_counter()
    if job.raw is None:  # an RGB photo alone (8 or 16 bits): viewing orientation, its RAW made by the inverse ISP
        raw, orientation = None, 0
        I_rgb = torch.from_numpy(read_photo(job.rgb)[0]).permute(2, 0, 1)[None]
        if more := extra_frames(job.rgb):
            print(f"note: {job.rgb.name} holds {more + 1} frames (an animation or pages); only the first is processed")
        rgb_u8 = to_uint8(I_rgb)
        I_rgb, I_raw = rgb_only_inputs(I_rgb)
    else:
        raw = read_camera_raw(job.raw)
        orientation = raw.orientation
        rgb_u8 = load_jpeg_partner(job.rgb, raw) if job.rgb is not None else render_rgb(raw)
        I_rgb = torch.from_numpy(rgb_u8).permute(2, 0, 1)[None].float().div_(255)
        I_raw = torch.from_numpy(raw.packed())[None]
    h, w = rgb_u8.shape[:2]
    seconds = {"read": time.perf_counter() - start}
    size = work_size(h, w, args.work_megapixels) if args.work_megapixels else None
    if args.work_megapixels and size is None:
        print(f"note: {job.photo.name} ({w}x{h}) is not larger than --work_megapixels {args.work_megapixels:g}: the "
              "network runs at its full resolution")
    working = f" -> {size[1]}x{size[0]}" if size else ""
    tiles = tqdm(total=None, desc=f"  {job.photo.name} ({w}x{h}{working})", unit="tile", leave=False, file=sys.stdout)

    def progress(done, total):
        tiles.total = total
        tiles.update(1)

    start = time.perf_counter()
    with torch.inference_mode():
        if size is not None:
            uses_raw = args.raw_out and args.raw_mosaic in MODES_USING_T_PRED_RAW
            keys = [f"{kind}_pred_rgb" for kind in result_kinds(args)] + (["T_pred_raw"] if uses_raw else [])
            out = separate_at_work_resolution(net, I_rgb, I_raw, args.work_megapixels, device, precision, channels_last,
                                              args.tile, args.tile_overlap, args.guide_radius, args.guide_eps,
                                              keys=keys, progress=progress)
        else:
            out = separate_tiled(net, I_rgb, I_raw, args.tile, args.tile_overlap, device, precision, channels_last,
                                 progress=progress)
    tiles.close()
    out = {key: value[..., :h, :w] if key.endswith("_rgb") else value for key, value in out.items()}  # odd sizes
    seconds["remove"] = time.perf_counter() - start
    start = time.perf_counter()
    files = job_outputs(out_dir, job, args)
    viewed = {"I": apply_orientation(rgb_u8, orientation)}
    # the results are in the colour encoding of the RGB input and show the same shot: they carry its colour profile
    # (so that they look like it) and its EXIF (camera, exposure, date)
    view_h, view_w = viewed["I"].shape[:2]
    # a RAW file's own metadata (LibRaw's reading): for its DNG, and for the EXIF of results that have no JPEG
    source = None
    if raw is not None and (args.raw_out or job.rgb is None):
        source = read_source_metadata(raw.path, raw.size, colour_tags=args.raw_out)
    if job.rgb is not None:
        metadata = embedded_metadata(job.rgb, (view_w, view_h))
    else:
        metadata = EmbeddedMetadata(exif=shot_exif(source, (view_w, view_h)) if source is not None else None)
    if metadata.icc and not is_srgb_profile(metadata.profile):
        print(f"note: {job.rgb.name} is in the colour space '{metadata.profile}' (the network was trained on sRGB); "
              "its results carry that profile")
    for kind in result_kinds(args):
        viewed[kind] = apply_orientation(to_uint8(out[f"{kind}_pred_rgb"]), orientation)
        if args.format == "tiff16":
            write_rgb16(files[kind], np.ascontiguousarray(apply_orientation(to_uint16(out[f"{kind}_pred_rgb"]),
                                                                            orientation)), metadata.icc)
        else:
            save_image(files[kind], viewed[kind], args.format, args.quality, metadata)
    if args.raw_out:
        mosaic = reflection_free_mosaic(raw, I_rgb, out, args.raw_mosaic, source.render_matrix)
        how = f"--raw_mosaic {args.raw_mosaic}" + (f", --work_megapixels {args.work_megapixels:g}" if size else "")
        description = f"{job.photo.name} with the reflection removed by CR3Net ({network}; {how})"
        write_reflection_free_dng(files["T_dng"], raw, mosaic, source, description)
    if args.page:
        for kind, image in viewed.items():
            write_rgb(files[f"preview_{kind}"], make_preview(image, args.preview_size), quality=PREVIEW_QUALITY,
                      **({"icc_profile": metadata.icc} if metadata.icc else {}))
    seconds["write"] = time.perf_counter() - start
    return PhotoResult(job, files, (view_w, view_h), seconds)


def rgb_source(job: Job) -> str:
    """Where a photo's RGB input came from, for the console and the page."""
    if job.raw is None:
        return "no RAW file: RAW made from the RGB by the inverse ISP"
    return f"camera JPEG {job.rgb.name}" if job.rgb else "RGB rendered from the RAW"


def write_page(out_dir: Path, results: list[PhotoResult], failed: list[tuple[Path, str]], header: list[str]) -> Path:
    """``index.html`` of a ``--page`` run: each photo (its RGB input) beside its result and reflection."""
    labels = {"I": "before", "T": "after: reflection removed", "R": "removed reflection"}
    rows = []
    for result in results:
        job, files = result.job, result.files
        cells = [("before", files["preview_I"], job.rgb or job.raw)]
        cells += [(labels[kind], files[f"preview_{kind}"], files[kind]) for kind in ("T", "R") if kind in files]
        width, height = result.size
        source = rgb_source(job)
        links = [("RAW without the reflection (DNG)", files["T_dng"])] if "T_dng" in files else []
        if job.raw is not None:
            links.append(("original RAW", job.raw))
        rows.append({"title": f"{job.photo.name} ({width}x{height}; {source})", "cells": cells, "links": links})
    path = out_dir / PAGE_NAME
    write_before_after(path, "CR3Net: reflections removed (before / after)", rows, header,
                       [(str(p), message) for p, message in failed])
    return path


def main(argv=None, net=None) -> int:
    """Run on the command line ``argv``; returns the exit status (1 where some photos of a folder failed).

    ``net``: a generator to run instead of the weights of ``--checkpoint`` (its forward as CR3Net's; tests pass
    :class:`models.inference.IdentityNet`, the network that removes nothing).
    """
    keep_buffers_mapped()  # large buffers stay mapped between layers (util/allocator.py)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    jobs = collect_jobs(args.inputs)
    check_jobs(jobs, args)
    out_dir = Path(args.out_dir)
    plan_outputs(jobs, out_dir, args)
    _, device = resolve_device(args.gpu_ids)
    precision = resolve_precision(args.precision, device)
    if net is None:
        if not Path(args.checkpoint).is_file():
            raise UserError(f"no weights at {args.checkpoint}; pass --checkpoint PATH to a CR3Net generator (.pth)")
        net, ngf, num_cab = load_network(args.checkpoint, device)
        network = f"weights {args.checkpoint} (ngf {ngf}, num_cab {num_cab})"
    else:
        net = net.to(device).eval()
        network = f"network {type(net).__name__}"
    channels_last = resolve_channels_last(precision, device, args.channels_last, args.no_channels_last)
    net = maybe_compile(to_memory_format(net, channels_last), args.compile)
    if args.compile:
        network += ", torch.compile"
    working = (f", working resolution about {args.work_megapixels:g} MP (guided filter radius {args.guide_radius}, "
               f"eps {args.guide_eps:g})" if args.work_megapixels else "")
    path = describe_path(precision, device, channels_last)
    print(f"{len(jobs)} photo(s); {network}; {device}, {path}, tile {args.tile}{working}")
    failed, results = [], []
    for job in tqdm(jobs, desc="photos", unit="photo", file=sys.stdout, disable=len(jobs) < 2):
        start = time.perf_counter()
        try:
            result = process(job, net, args, device, precision, channels_last, out_dir, network)
        except FileSystemError:
            raise  # a full disk or a read-only folder: the other photos cannot be written either
        except UserError as err:
            if len(jobs) == 1:
                raise
            message = str(unwrap_worker_error(err))
            print(f"error: {message}", file=sys.stderr)
            failed.append((job.photo, message))
            continue
        results.append(result)
        shown = [str(p) for kind, p in result.files.items() if not kind.startswith("preview_")]
        stages = ", ".join(f"{stage} {t:.1f}" for stage, t in result.seconds.items())
        seconds = time.perf_counter() - start
        print(f"{job.photo.name} ({rgb_source(job)}) -> {', '.join(shown)} [{seconds:.1f} s: {stages}]")
    if args.page:
        header = [f"{len(results)} of {len(jobs)} photo(s); {network}."]
        if args.raw_out:
            header.append(f"DNG mosaic: --raw_mosaic {args.raw_mosaic} (see the README).")
        if args.work_megapixels:
            header.append(f"Network at about {args.work_megapixels:g} MP, result carried to full resolution by a "
                          f"guided filter (radius {args.guide_radius}, eps {args.guide_eps:g}).")
        print(f"before/after page: {write_page(out_dir, results, failed, header)}")
    if failed:
        print(f"\n{len(jobs) - len(failed)} of {len(jobs)} photo(s) done; {len(failed)} failed:", file=sys.stderr)
        for path, msg in failed:
            print(f"  {path}: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    exit_fast(run_cli(main))
