"""Options of train.py: upstream's training recipe as defaults, an iteration-based loop, checkpoints and logging.

Loss weights, the discriminator and the VGG backbone are model options (``models/rawrr_training.py``); crop size,
samples per epoch and the synthesis model are dataset options (``data/rawrr_train_dataset.py``).
"""

import math

from data.pseudo_raw import DEFAULT_RAW_SOURCE
from data.rawrr_dataset import DEFAULT_EVAL_RESIZE, EVAL_RESIZE_CHOICES
from data.rawrr_train_dataset import CROP_MULTIPLE
from models.architecture import ARCH_FLAGS, DEFAULTS
from models.networks import LR_POLICIES
from options.base_options import BaseOptions, save_options
from util.errors import UserError
from util.precision import PRECISIONS
from util.registry import add_flag_once

TRAIN_NUM_THREADS = 2  # data-loading workers per process while training
# integer flags and their smallest valid value (0 means "off" / "from another flag" where the help says so)
MIN_INT = {"batch_size": 1, "samples_per_epoch": 1, "ngf": 1, "num_cab": 1, "ndf": 1, "n_layers_D": 1,
           "num_threads": 0, "n_iters": 0, "n_epochs": 0, "lr_decay_iters": 0, "save_latest_freq": 0,
           "save_epoch_freq": 0, "print_freq": 0, "display_freq": 0, "val_freq": 0, "val_num": 0}
# float flags: (low, low allowed, high, high allowed, how to say it)
FLOAT_RANGES = {"lr": (0.0, False, math.inf, False, "a finite number > 0"),
                "beta1": (0.0, True, 1.0, False, "in [0, 1)"),
                "beta2": (0.0, True, 1.0, False, "in [0, 1)"),
                "max_grad_norm": (0.0, True, math.inf, False, "a finite number >= 0 (0 = no clipping)"),
                "real_ratio": (0.0, True, 1.0, True, "in [0, 1]")}
LAMBDA_RANGE = (0.0, True, math.inf, False, "a finite number >= 0 (0 = term off)")


class TrainOptions(BaseOptions):
    is_train = True
    description = "Train CR3Net on RAW+RGB pairs (synthetic and real), iteration-based, resumable."

    def initialize(self, parser):
        parser = super().initialize(parser)
        # training defaults of flags shared with test.py
        parser.set_defaults(num_threads=TRAIN_NUM_THREADS, epoch="latest")
        for action in parser._actions:
            if action.dest == "epoch":
                action.help = "checkpoint label that --continue_train resumes from: <epoch>_train_state.pth"
            if action.dest == "precision":
                action.help = (f"autocast precision {PRECISIONS}: auto = bf16 on a CPU with native bf16 or a CUDA GPU "
                               "with bf16 (fp16 + GradScaler on older GPUs), else fp32")

        g = parser.add_argument_group("training loop (upstream recipe as defaults)")
        add_flag_once(g, "--batch_size", type=int, default=2,
                      help="samples per optimisation step PER PROCESS (under torchrun the global batch is "
                      "batch_size x number of processes)")
        add_flag_once(g, "--n_epochs", type=int, default=80,
                      help="epochs of --samples_per_epoch samples; iterations = n_epochs x samples_per_epoch / "
                      "(batch_size x processes)")
        add_flag_once(g, "--n_iters", type=int, default=0, help="total optimisation steps; 0 = from --n_epochs")
        add_flag_once(g, "--epoch_count", type=int, default=1,
                      help="number of the first epoch of a new run (also seeds its data); a resumed run continues "
                      "from its saved epoch")
        add_flag_once(g, "--continue_train", action="store_true",
                      help="resume exactly from <checkpoints_dir>/<name>/<epoch>_train_state.pth (--epoch latest)")
        add_flag_once(g, "--init_from", default="",
                      help="generator weights (.pth) to start from, e.g. the released final_net_G_T.pth; "
                      "its --ngf/--num_cab must match the network's")
        add_flag_once(g, "--lr", type=float, default=1e-4, help="Adam learning rate of G and D")
        add_flag_once(g, "--beta1", type=float, default=0.5, help="Adam beta1")
        add_flag_once(g, "--beta2", type=float, default=0.999, help="Adam beta2")
        add_flag_once(g, "--lr_policy", default="constant", choices=LR_POLICIES,
                      help="learning-rate schedule, stepped once per iteration")
        add_flag_once(g, "--lr_decay_iters", type=int, default=0,
                      help="step: iterations between x0.1 decays; linear: iteration where the decay to 0 starts "
                      "(0 = half of the run)")
        add_flag_once(g, "--max_grad_norm", type=float, default=0.0,
                      help="clip the gradient norm of G and of D to this value (0 = no clipping)")

        g = parser.add_argument_group("checkpoints and logs (frequencies in iterations unless stated)")
        add_flag_once(g, "--save_latest_freq", type=int, default=5000,
                      help="save 'latest' every this many iterations and at the end (0 = at the end only)")
        add_flag_once(g, "--save_by_iter", action="store_true",
                      help="also keep each of those as an 'iter_<n>' checkpoint")
        add_flag_once(g, "--save_epoch_freq", type=int, default=5,
                      help="keep a '<epoch>' checkpoint at the end of every this many EPOCHS (0 = never)")
        add_flag_once(g, "--print_freq", type=int, default=100,
                      help="print mean losses, lr, speed and ETA and append them to loss_log.txt (0 = never)")
        add_flag_once(g, "--display_freq", type=int, default=400,
                      help="send sample images to visdom and the web/index.html page (0 = never)")

        g = parser.add_argument_group("visdom dashboard (optional)")
        add_flag_once(g, "--display_id", type=int, default=0, help="visdom window id; 0 = no dashboard")
        add_flag_once(g, "--display_server", default="http://localhost", help="visdom server address")
        add_flag_once(g, "--display_port", type=int, default=8097, help="visdom server port")
        add_flag_once(g, "--display_env", default="", help="visdom environment (default: --name)")
        add_flag_once(g, "--display_winsize", type=int, default=256, help="longest side of each displayed image")
        add_flag_once(g, "--display_ncols", type=int, default=4, help="images per row on the dashboard")

        g = parser.add_argument_group("validation (PSNR/SSIM/LPIPS as test.py computes them)")
        add_flag_once(g, "--val_dataroot", nargs="+", default=[], metavar="DIR",
                      help="held-out test-layout folders with ground truth (testB_*, testA1_*), each validated and "
                      "logged as its own set (e.g. the folders of scripts/make_val_sets.py); none = no validation")
        add_flag_once(g, "--val_no_lpips", action="store_true", help="validate with PSNR and SSIM only")
        add_flag_once(g, "--val_freq", type=int, default=2000,
                      help="validate every this many iterations (0 = only at the end)")
        add_flag_once(g, "--val_num", type=int, default=0, help="validate on the first this many images (0 = all)")
        add_flag_once(g, "--val_resize", default=DEFAULT_EVAL_RESIZE, choices=EVAL_RESIZE_CHOICES,
                      help="image size for validation, as test.py's --eval_resize")
        return parser

    def gather_options(self, argv):
        opt = super().gather_options(argv)
        if not opt.continue_train:
            # a new run: the width is the flags' or upstream's, never a previous run's in the same folder
            for key in ARCH_FLAGS:
                if getattr(opt, key) is None:
                    setattr(opt, key, DEFAULTS[key])
            if opt.raw_source is None:
                opt.raw_source = DEFAULT_RAW_SOURCE
        return opt

    def parse(self, argv=None, save=True):
        """Parse, then refuse impossible values (:func:`check_training_options`) before anything is written."""
        opt = super().parse(argv, save=False)
        check_training_options(opt)
        if save:
            save_options(opt, self.parser)
        return opt


def check_training_options(opt) -> None:
    """Raise :class:`UserError`, one line naming the flag and the valid values, for the first impossible training
    flag. Flags that plug-ins define (loss weights, dataset) are checked where present."""

    def fail(flag, value, what):
        raise UserError(f"--{flag} {value:g}: must be {what}")

    for flag, low in MIN_INT.items():
        value = getattr(opt, flag, None)
        if value is not None and value < low:
            fail(flag, value, f"an integer >= {low}")
    ranges = dict(FLOAT_RANGES, **{k: LAMBDA_RANGE for k in sorted(vars(opt)) if k.startswith("lambda_")})
    for flag, (low, low_ok, high, high_ok, what) in ranges.items():
        value = getattr(opt, flag, None)
        if value is None:
            continue
        ok = (math.isfinite(value) and (low <= value if low_ok else low < value)
              and (value <= high if high_ok else value < high))
        if not ok:
            fail(flag, value, what)
    crop = getattr(opt, "crop_size", None)
    if crop is not None and (crop <= 0 or crop % CROP_MULTIPLE):
        fail("crop_size", crop, f"a positive multiple of {CROP_MULTIPLE} (the generator halves the packed RAW twice)")
    if getattr(opt, "n_iters", 1) == 0 and getattr(opt, "n_epochs", 1) == 0:
        raise UserError("--n_epochs 0 with --n_iters 0 leaves nothing to train: give --n_epochs or --n_iters > 0")
