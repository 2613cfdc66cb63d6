"""Options of test.py (upstream names: --results_dir --num_test --eval --phase)."""

from data.rawrr_dataset import DEFAULT_EVAL_RESIZE, EVAL_RESIZE_CHOICES, OFFICIAL_TEST_LONG_SIDE
from models.tiling import DEFAULT_OVERLAP, check_tiling
from models.work_resolution import check_work_resolution
from options.base_options import BaseOptions, add_compile_flag, add_work_resolution_flags
from util.errors import UserError


class TestOptions(BaseOptions):
    is_train = False
    description = "Evaluate CR3Net on a RAW+RGB test set: images, PSNR/SSIM/LPIPS, an HTML report."

    def initialize(self, parser):
        parser = super().initialize(parser)
        g = parser.add_argument_group("evaluation")
        g.add_argument("--results_dir", default="./results",
                       help="results go to <results_dir>/<name>/test_<epoch>/")
        g.add_argument("--phase", default="test", help="phase name (upstream flag)")
        g.add_argument("--num_test", type=int, default=0, help="evaluate at most this many images (0 = all)")
        g.add_argument("--eval", action="store_true", help="upstream flag; the network is always run in eval mode")
        g.add_argument("--eval_resize", default=DEFAULT_EVAL_RESIZE, choices=EVAL_RESIZE_CHOICES,
                       help="official = upstream's rule (long side 640, short side a multiple of 64); "
                       "none = native resolution (padded to a multiple of 8, cropped back)")
        g.add_argument("--tile", type=int, default=0,
                       help="run the network on overlapping tiles of this many RGB pixels (multiple of 8; 0 = whole "
                       "image): bounded memory for full-resolution photos")
        g.add_argument("--tile_overlap", type=int, default=None,
                       help=f"overlap of neighbouring tiles, in RGB pixels (even; default {DEFAULT_OVERLAP}, at most "
                       "half of --tile)")
        add_work_resolution_flags(g, "with --eval_resize none: run the network on each image scaled down to about MP "
                                  "megapixels and carry its result to native resolution with a guided filter (as "
                                  "remove_reflection.py); 0 = the network at the evaluation size")
        g.add_argument("--no_lpips", action="store_true", help="skip LPIPS (PSNR and SSIM only)")
        add_compile_flag(g)
        return parser

    def validate(self, opt) -> None:
        super().validate(opt)
        if opt.num_test < 0:
            raise UserError(f"--num_test {opt.num_test} is negative; give 0 (all images) or a count")
        opt.tile_overlap = check_tiling(opt.tile, opt.tile_overlap)
        opt.guide_radius, opt.guide_eps = check_work_resolution(opt.work_megapixels, opt.guide_radius, opt.guide_eps)
        if opt.work_megapixels and opt.eval_resize != "none":
            raise UserError(f"--work_megapixels {opt.work_megapixels:g} works at native resolution: add --eval_resize "
                            f"none (--eval_resize {opt.eval_resize} first scales every image to "
                            f"{OFFICIAL_TEST_LONG_SIDE} px)")
