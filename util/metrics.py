"""The one metric code path: PSNR, SSIM and LPIPS on 8-bit sRGB images exactly as saved.

test.py, training validation and ``python -m util.metrics REF_DIR OUT_DIR`` all call these functions,
so every number the project reports follows :data:`METRIC_CONVENTION` (written into metrics files and
the README). Inputs are ``ref_u8`` / ``out_u8``: (H, W, 3) uint8 numpy arrays, RGB, values 0..255.
"""

import argparse
import functools
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

try:  # the module itself: skimage.metrics' package also imports simple_metrics, whose scipy.stats costs 0.7 s
    from skimage.metrics._structural_similarity import structural_similarity
except ImportError:  # another scikit-image layout
    from skimage.metrics import structural_similarity

from util.backbones import backbone_file, load_alexnet_features
from util.errors import UserError, run_cli
from util.image_io import UINT8_MAX, files_by_stem, read_rgb

DATA_RANGE_U8 = UINT8_MAX  # metrics see 8-bit images; the data range is fixed, never inferred from the data
LPIPS_NET = "alex"
LPIPS_VERSION = "0.1"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

METRIC_CONVENTION = {
    "images": "8-bit sRGB exactly as saved (x.clamp(0, 1).mul(255).round().byte()), RGB channel order",
    "crop": "none (no border shave), full RGB image (no Y channel)",
    "psnr": (
        "skimage.metrics.peak_signal_noise_ratio(ref, out, data_range=255) on RGB uint8 (its formula, 10 log10(255^2 "
        "/ MSE) with the MSE in float64, computed by util.metrics: equal bit for bit, tested); identical images -> inf"
    ),
    "ssim": (
        "skimage.metrics.structural_similarity(ref, out, channel_axis=2, data_range=255), defaults "
        "(gaussian_weights=False, 7x7 uniform window, K1=0.01, K2=0.03), mean over the 3 RGB channels"
    ),
    "lpips": (
        "lpips package LPIPS(net='alex', version='0.1'): torchvision ImageNet AlexNet features trunk "
        "(util.backbones), linear heads from the lpips wheel (weights/v0.1/alex.pth); inputs x / 127.5 - 1 in [-1, 1]"
    ),
    "mean": "arithmetic mean over images of the per-image values",
}


def _check_pair(ref_u8: np.ndarray, out_u8: np.ndarray) -> None:
    """Raise ``ValueError`` unless both images are (H, W, 3) uint8 arrays of the same shape."""
    if ref_u8.shape != out_u8.shape:
        raise ValueError(f"image shapes differ: reference {ref_u8.shape} vs output {out_u8.shape}")
    if ref_u8.ndim != 3 or ref_u8.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) RGB images, got shape {ref_u8.shape}")
    if ref_u8.dtype != np.uint8 or out_u8.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {ref_u8.dtype} and {out_u8.dtype}: quantise with "
                         "util.image_io.to_uint8")


def psnr(ref_u8: np.ndarray, out_u8: np.ndarray) -> float:
    """PSNR in dB over all pixels and RGB channels, peak 255; ``inf`` for identical images."""
    _check_pair(ref_u8, out_u8)
    # skimage's formula, step for step (tests/test_metrics.py compares the two); computed here because importing
    # skimage.metrics.simple_metrics imports scipy.stats, 0.7 s of every test.py start-up
    diff = ref_u8.astype(np.float64) - out_u8.astype(np.float64)
    mse = np.mean(diff * diff, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return float(10 * np.log10((DATA_RANGE_U8**2) / mse))


def ssim(ref_u8: np.ndarray, out_u8: np.ndarray) -> float:
    """SSIM (skimage defaults: 7x7 uniform window) averaged over the RGB channels, data range 255."""
    _check_pair(ref_u8, out_u8)
    return float(structural_similarity(ref_u8, out_u8, channel_axis=2, data_range=DATA_RANGE_U8))


def _u8_to_lpips_input(image_u8: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1] on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(image_u8)).permute(2, 0, 1)[None].float()
    return (tensor / (DATA_RANGE_U8 / 2) - 1).to(device)


def _load_trunk_into_slices(net: torch.nn.Module, features_state: dict[str, torch.Tensor]) -> None:
    """Copy an AlexNet ``features`` state_dict into lpips' ``net.slice1..N``.

    lpips keeps torchvision's layer index as each child's name inside its slice (slice1 holds 0-1,
    slice2 2-4, slice3 5-7, slice4 8-9, slice5 10-11), so ``features.{i}.*`` goes to ``slice{k}.{i}.*``.
    Strict: every slice parameter must be set and every features entry used.
    """
    remapped = {}
    for k in range(1, net.N_slices + 1):
        for index in getattr(net, f"slice{k}")._modules:
            for key, value in features_state.items():
                if key.split(".", 1)[0] == index:
                    remapped[f"slice{k}.{key}"] = value
    if len(remapped) != len(features_state):
        raise RuntimeError(f"AlexNet entries not placed in any LPIPS slice: {len(features_state) - len(remapped)}")
    net.load_state_dict(remapped, strict=True)


class LPIPS:
    """LPIPS-alex v0.1 on uint8 images; built on first use, trunk from :mod:`util.backbones` (no downloads).

    ``LPIPS(device)(ref_u8, out_u8) -> float``; 0 for identical images, larger is more different. Constructing it
    checks that the AlexNet weights are set up (:func:`util.backbones.backbone_file`: a ``UserError`` naming the file
    and the setup command), so that a run stops before its first image rather than at its first score.
    """

    def __init__(self, device="cpu"):
        self.device = torch.device(device)
        backbone_file("alexnet")
        self._model = None

    @property
    def model(self) -> torch.nn.Module:
        """The ``lpips.LPIPS`` module (eval mode, on ``self.device``), built on first access."""
        if self._model is None:
            import lpips  # here, not at module level: it imports torchvision's models (seconds), needed only now

            trunk = load_alexnet_features().state_dict()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
                # pnet_rand: no torchvision download; the linear heads come from the lpips wheel itself
                model = lpips.LPIPS(net=LPIPS_NET, version=LPIPS_VERSION, pnet_rand=True, verbose=False)
            _load_trunk_into_slices(model.net, trunk)
            self._model = model.to(self.device).eval().requires_grad_(False)
        return self._model

    def __call__(self, ref_u8: np.ndarray, out_u8: np.ndarray) -> float:
        _check_pair(ref_u8, out_u8)
        with torch.inference_mode():
            ref = _u8_to_lpips_input(ref_u8, self.device)
            out = _u8_to_lpips_input(out_u8, self.device)
            return float(self.model(ref, out).item())


@functools.cache
def _default_lpips() -> LPIPS:
    """Process-wide CPU LPIPS used when callers pass none."""
    return LPIPS("cpu")


def compute_metrics(ref_u8: np.ndarray, out_u8: np.ndarray, lpips_model: LPIPS | None = None) -> dict[str, float]:
    """``{'psnr', 'ssim', 'lpips'}`` of one (H, W, 3) uint8 pair; ``lpips_model`` defaults to a shared CPU one."""
    _check_pair(ref_u8, out_u8)
    if lpips_model is None:
        lpips_model = _default_lpips()
    return {"psnr": psnr(ref_u8, out_u8), "ssim": ssim(ref_u8, out_u8), "lpips": lpips_model(ref_u8, out_u8)}


def score_separation(images: dict[str, np.ndarray], lpips_model: LPIPS | None = None) -> dict[str, float]:
    """Metrics of one separated image, as test.py and training validation report them.

    ``images``: 8-bit (H, W, 3) arrays keyed ``I`` (input), ``T``, ``R`` (predictions), ``T_gt`` and ``R_gt``
    (ground truth, each optional). Returns ``T_psnr/ssim/lpips`` (T vs T_gt), ``I_*`` (I vs T_gt: the do-nothing
    baseline) and ``R_*`` (R vs R_gt), each where its ground truth exists; ``*_lpips`` only with ``lpips_model``.
    """
    row: dict[str, float] = {}
    pairs = {"T": ("T_gt", "T"), "I": ("T_gt", "I"), "R": ("R_gt", "R")}
    for key, (ref, out) in pairs.items():
        if ref not in images:
            continue
        row[f"{key}_psnr"] = psnr(images[ref], images[out])
        row[f"{key}_ssim"] = ssim(images[ref], images[out])
        if lpips_model is not None:
            row[f"{key}_lpips"] = lpips_model(images[ref], images[out])
    return row


def mean_rows(rows: list[dict], keys) -> dict[str, float]:
    """Arithmetic mean of each of ``keys`` over the ``rows`` that have a value for it other than NaN (``inf``
    propagates; keys without any value are left out): the one averaging of per-image metrics, through
    ``models.evaluation`` (test.py's metrics.json, training validation)."""
    means = {}
    for key in keys:
        values = [float(r[key]) for r in rows if r.get(key) is not None and not math.isnan(float(r[key]))]
        if values:
            means[key] = float(np.mean(values))
    return means


def json_safe(obj):
    """Copy of ``obj`` (dicts, lists, tuples, numbers) with NaN/inf floats replaced by None, for JSON files."""
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(value) for value in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def main(argv=None) -> int:
    """CSV ``name,psnr,ssim,lpips`` on stdout for each REF_DIR image with a same-stem partner in OUT_DIR.

    Returns the exit status: 0 when every reference was scored, 1 when some were not (no partner, unreadable, other
    size: one ``error:`` line each on stderr, the other pairs still scored). Nothing to score at all is a
    :class:`UserError` (exit status 2).
    """
    parser = argparse.ArgumentParser(description="PSNR / SSIM / LPIPS of OUT_DIR images against REF_DIR images.")
    parser.add_argument("ref_dir", type=Path, help="reference (ground-truth) images")
    parser.add_argument("out_dir", type=Path, help="images to score, matched to references by file stem")
    parser.add_argument("--device", default="cpu", help="torch device for LPIPS (default cpu)")
    args = parser.parse_args(argv)
    refs = files_by_stem(args.ref_dir, IMAGE_EXTENSIONS, unique=True)
    outs = files_by_stem(args.out_dir, IMAGE_EXTENSIONS, unique=True)
    problems = [f"{refs[stem]} has no partner named {stem}.* in {args.out_dir}" for stem in sorted(refs.keys() - outs)]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    paired = sorted(refs.keys() & outs.keys())
    if not paired:
        raise UserError(f"no image in {args.out_dir} shares a file stem with an image in {args.ref_dir}")
    lpips_model = LPIPS(args.device)
    print("name,psnr,ssim,lpips", flush=True)
    scored = 0
    for stem in paired:
        try:
            ref_u8, out_u8 = read_rgb(refs[stem], rgb_only=True), read_rgb(outs[stem], rgb_only=True)
            if ref_u8.shape != out_u8.shape:
                raise UserError(f"{outs[stem]} is {out_u8.shape} but {refs[stem]} is {ref_u8.shape}: sizes must match")
        except UserError as err:
            problems.append(str(err))
            print(f"error: {err}", file=sys.stderr, flush=True)
            continue
        values = compute_metrics(ref_u8, out_u8, lpips_model)
        print(f"{refs[stem].name},{values['psnr']:.4f},{values['ssim']:.4f},{values['lpips']:.4f}", flush=True)
        scored += 1
    if problems:
        print(f"{scored} of {len(refs)} reference image(s) scored; {len(problems)} not (see the error lines above)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
