"""``--model RAWRR``: CR3Net for evaluation; its training (PatchGAN, upstream losses) is models/rawrr_training.py.

``RAWRR`` is upstream's model name: ``--model RAWRR`` finds this file and :class:`RAWRRModel` by that name
(:func:`util.registry.find_class`), so the file and class keep it.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from models.checkpoint import load_generator_weights
from models.networks import define_G
from models.tiling import DEFAULT_OVERLAP, separate_tiled
from models.work_resolution import DEFAULT_GUIDE_EPS, DEFAULT_GUIDE_RADIUS, separate_at_work_resolution
from util.errors import UserError
from util.precision import maybe_compile, resolve_channels_last, resolve_precision, to_memory_format

RELEASED_WEIGHTS_HINT = (
    "the released weights are final_net_G_T.pth from the CR3Net authors (github NamecantbeNULL/RAW_RGB_RR), "
    "to be put in checkpoints/RAW_RGB_RR/"
)


class RAWRRModel:
    """CR3Net generator ``netG_T`` (it predicts both T and R) with device, precision and checkpoint handling."""

    @staticmethod
    def modify_commandline_options(parser, is_train=True):
        if is_train:
            from models.rawrr_training import add_training_options

            add_training_options(parser)
        return parser

    def __init__(self, opt):
        self.opt = opt
        self.device = torch.device(opt.device)
        self.precision = resolve_precision(opt.precision, self.device)
        self.channels_last = resolve_channels_last(self.precision, self.device, getattr(opt, "channels_last", False),
                                                   getattr(opt, "no_channels_last", False))
        self.save_dir = Path(opt.checkpoints_dir) / opt.name
        self.netG_T = define_G(opt.ngf, opt.num_cab, opt.netG, opt.init_type, opt.init_gain, self.device)
        self.netG_T = to_memory_format(self.netG_T, self.channels_last)
        # test.py --compile: inference runs through the compiled module (same parameters as netG_T)
        self.net_for_inference = maybe_compile(self.netG_T, getattr(opt, "compile", False))
        self.inference_seconds = 0.0

    # ---------------------------------------------------------------- weights
    def weights_path(self, epoch) -> Path:
        return self.save_dir / f"{epoch}_net_G_T.pth"

    def setup(self, opt):
        """Load ``<checkpoints_dir>/<name>/<epoch>_net_G_T.pth`` for evaluation."""
        path = self.weights_path(opt.epoch)
        if not path.is_file():
            hint = RELEASED_WEIGHTS_HINT if opt.name == "RAW_RGB_RR" else "train it first or check --name/--epoch"
            raise UserError(f"no weights at {path}: {hint}")
        load_generator_weights(self.netG_T, path)
        self.loaded_weights = path
        self.eval()

    def eval(self):
        self.netG_T.eval()

    # ---------------------------------------------------------------- inference
    def set_input(self, batch: dict):
        """Batch from a rawrr dataset: ``I_rgb`` (B,3,H,W), ``I_raw`` (B,4,H/2,W/2) and optional T_*/R_* targets."""
        non_blocking = self.device.type == "cuda"
        self.input = {k: v.to(self.device, non_blocking=non_blocking) for k, v in batch.items()
                      if isinstance(v, torch.Tensor) and v.dim() == 4}

    @torch.inference_mode()
    def test(self):
        """Predict T and R for the current input; records the inference time in ``inference_seconds``.

        Returns the input ``I_rgb`` (1, 3, H, W) float32 sRGB [0, 1], the predictions of
        :func:`models.tiling.separate_tiled` (CPU float32 in [0, 1]: ``T_pred_rgb``, ``R_pred_rgb`` (1, 3, H, W),
        ``T_pred_raw``, ``R_pred_raw`` (1, 4, H/2, W/2)) and, where the batch has them, the ground truth under the
        batch's own names ``T_rgb`` / ``R_rgb`` (1, 3, H, W) float32 sRGB [0, 1]; inputs and ground truth stay on the
        model's device."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        # whole image with --tile 0 (the default), else overlapping tiles; with --work_megapixels the network runs on
        # the image scaled down and its result is carried back by a guided filter; outputs come back on the CPU
        tile, overlap = int(getattr(self.opt, "tile", 0)), getattr(self.opt, "tile_overlap", DEFAULT_OVERLAP)
        work_megapixels = float(getattr(self.opt, "work_megapixels", 0) or 0)
        if work_megapixels > 0:
            out = separate_at_work_resolution(
                self.net_for_inference, self.input["I_rgb"], self.input["I_raw"], work_megapixels, self.device,
                self.precision, self.channels_last, tile, overlap,
                getattr(self.opt, "guide_radius", DEFAULT_GUIDE_RADIUS),
                getattr(self.opt, "guide_eps", DEFAULT_GUIDE_EPS))
        else:
            out = separate_tiled(self.net_for_inference, self.input["I_rgb"], self.input["I_raw"], tile, overlap,
                                 self.device, self.precision, self.channels_last)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.inference_seconds = time.perf_counter() - start
        visuals = {"I_rgb": self.input["I_rgb"], **out}
        for k in ("T_rgb", "R_rgb"):
            if k in self.input:
                visuals[k] = self.input[k]
        return visuals
