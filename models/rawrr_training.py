"""Training of ``--model RAWRR``: the PatchGAN, the upstream losses, optimisers, and the resumable training state.

:class:`RAWRRTrainer` wraps a :class:`models.rawrr_model.RAWRRModel` (which owns the generator ``netG_T``) and adds
the discriminator ``netD``, the VGG perceptual loss, Adam optimisers, learning-rate schedulers, a GradScaler (fp16)
and, under ``torchrun``, ``DistributedDataParallel``. ``train.py`` runs the loop.

Generator loss (upstream's recipe; every weight is a flag), predictions ``*_pred_*`` against the batch's ground truth
``T_rgb``, ``R_rgb``, ``T_raw``, ``R_raw``::

    G = lambda_mse_T * MSE(T_pred_rgb, T_rgb) + lambda_mse_R * MSE(R_pred_rgb, R_rgb)       (MSE of T: --pixel_loss)
        + lambda_vgg * VGG(T_pred_rgb, T_rgb) + lambda_gan * LSGAN(D(T_pred_rgb) -> real)
        + lambda_raw * (L1(T_pred_raw, T_raw) + L1(R_pred_raw, R_raw))
    D = (LSGAN(D(T_rgb) -> real) + LSGAN(D(T_pred_rgb) -> fake)) / 2

Beyond upstream, off by default: ``lambda_exclusion * Excl(T_pred_rgb, R_pred_rgb)``
(:func:`models.losses.exclusion_loss`, every sample); ``lambda_grad * Grad(T_pred_rgb, T_rgb)``
(:func:`models.losses.gradient_loss`, L1 between image gradients at three scales, a T pixel term: real samples
weighted by ``--lambda_real_pixel``, targets tone-matched as below); ``lambda_structure * Struct(T_pred_rgb - T_rgb)``
(the squared error less its per-channel tone curve of the input, :func:`models.losses.curve_residual`: what a tone
curve cannot fix, reduced as the T pixel term); ``--lambda_real_pixel``, which multiplies the T
pixel terms of real samples (``is_real``) before the batch mean; and ``--real_tone_match``, which rescales each real
sample's T targets (RGB and RAW) per channel to the prediction's level before the pixel and VGG terms
(:func:`match_channel_gains`), so that the exposure and tint differences between the two shots of a real pair teach
nothing; ``--synthetic_tone_match`` does the same for synthetic samples, whose brightness relation between I and T
is the synthesis's random draw (glass transmittance, reflection gain), so that they teach what a global gain cannot
(where the reflection is) and the real pairs alone teach the tone.

Real and synthetic samples: synthetic samples and real triplets carry T and R targets in both domains; a real pair
without a reflection layer (``has_R`` False, e.g. the RGB-only sets of Zhang et al.) has no R target, so the two R
terms are means over the samples that have one (:func:`masked_mean`; 0 for a batch without any). ``is_real`` is only
counted for the logs.

Checkpoint layout, under ``<checkpoints_dir>/<name>/``, for a label (``latest``, ``final``, ``iter_<n>``, ``<epoch>``):

* ``<label>_net_G_T.pth``: the generator, bare CPU state_dict (loads in test.py and in upstream's code);
* ``<label>_net_D.pth``: the discriminator, bare CPU state_dict;
* ``<label>_train_state.pth``: everything a resumed run needs, self-contained (see :meth:`RAWRRTrainer.save`).

The three files of a label are written as one set: :func:`models.checkpoint_sets.write_set` stages all three, then
renames the train state (which holds G and D too: the authority) first; a kill between the renames is repaired at the
next start of train.py (``repair_pending_sets``), and the set a run resumes from is checked by content
(:meth:`RAWRRTrainer.load` with ``repair=True``). Resuming reads only the train state.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from models.checkpoint import infer_generator_shape, load_generator_weights, safe_torch_load
from models.checkpoint_sets import set_paths, sync_members, write_set
from models.losses import LSGANLoss, PerceptualLoss, curve_residual, exclusion_loss, gradient_loss
from models.networks import define_D, get_scheduler
from util.backbones import VGG_KINDS, load_vgg_features
from util.errors import UserError
from util.precision import autocast, to_memory_format
from util.registry import add_flag_once

PIXEL_LOSSES = ("mse", "psnr")
PSNR_LOSS_EPS = 1e-4  # keeps the weight of a near-perfect sample bounded (about 40 dB)
TRAIN_STATE_FORMAT = 1  # version of the <label>_train_state.pth layout
# the dashboard's visuals (get_current_visuals) in display order -> the names shown. Visdom captions and
# web/images/iter<n>_<name>.png keep their established names (T_rgb = the prediction, T_gt_rgb = the ground truth), so
# a resumed run's page (it rereads web/images/) and anything reading those files stay as they were
DISPLAY_NAMES = {"I_rgb": "I_rgb", "T_pred_rgb": "T_rgb", "T_rgb": "T_gt_rgb", "R_pred_rgb": "R_rgb",
                 "R_rgb": "R_gt_rgb", "I_raw": "I_raw", "T_pred_raw": "T_raw", "T_raw": "T_gt_raw"}
LOSS_NAMES = ("G", "G_MSE_T", "G_MSE_R", "G_VGG", "G_GAN", "G_raw_T", "G_raw_R", "G_excl", "G_grad", "G_struct",
              "D", "D_real", "D_fake")


def add_training_options(parser):
    """Model flags of ``--model RAWRR`` when training: loss weights (upstream values), discriminator, VGG."""
    g = parser.add_argument_group("RAWRR losses and discriminator (upstream values as defaults)")
    add_flag_once(g, "--lambda_mse_T", type=float, default=1.0, help="weight of MSE(T_rgb)")
    add_flag_once(g, "--pixel_loss", default="mse", choices=PIXEL_LOSSES,
                  help="T_rgb pixel loss: mse (upstream) or psnr (each sample by its relative error: the gradient "
                  "of mean PSNR, see models/rawrr_training.psnr_balanced_mean)")
    add_flag_once(g, "--lambda_mse_R", type=float, default=1.0, help="weight of MSE(R_rgb)")
    add_flag_once(g, "--lambda_vgg", type=float, default=1.0,
                  help="weight of the VGG perceptual L1 on T_rgb (relu1_1 / 2.6 + relu2_1 / 4.8)")
    add_flag_once(g, "--lambda_gan", type=float, default=0.01, help="weight of the LSGAN loss of G")
    add_flag_once(g, "--lambda_raw", type=float, default=1.0, help="weight of L1(T_raw) + L1(R_raw)")
    add_flag_once(g, "--lambda_exclusion", type=float, default=0.0,
                  help="weight of the gradient exclusion loss between predicted T_rgb and R_rgb (Zhang et al. 2018; "
                  "0 = off as upstream; logged as G_excl either way)")
    add_flag_once(g, "--lambda_grad", type=float, default=0.0,
                  help="weight of the L1 distance between the image gradients of predicted and true T_rgb at three "
                  "scales (a reflection's edges, which the pixel MSE weighs little beside the tone; real samples "
                  "weighted by --lambda_real_pixel, targets tone-matched as the pixel terms; 0 = off as upstream; "
                  "logged as G_grad either way)")
    add_flag_once(g, "--lambda_structure", type=float, default=0.0,
                  help="weight of the T_rgb pixel error that no per-channel tone curve of the input explains "
                  "(models.losses.curve_residual of T_pred - T: the structure a reflection leaves, not the tone; "
                  "reduced as --pixel_loss, real samples weighted by --lambda_real_pixel; 0 = off as upstream; "
                  "logged as G_struct either way)")
    add_flag_once(g, "--lambda_real_pixel", type=float, default=1.0,
                  help="multiplier of a real sample's T pixel terms (MSE(T_rgb), L1(T_raw)); 0 = real pairs teach "
                  "through the VGG and GAN terms only, which misalignment and tone shifts of real pairs hurt less "
                  "(Wei et al. 2019)")
    add_flag_once(g, "--real_tone_match", action="store_true",
                  help="rescale each real sample's T targets (RGB and RAW) per channel to the prediction's level "
                  "(least-squares gain, no offset, clamped to [0.5, 2]) before the pixel and VGG terms: the two "
                  "shots of a real pair differ in exposure and tint by chance (Zhang et al.'s pairs: T/I brightness "
                  "0.52-1.01), which no network can predict; off = upstream")
    add_flag_once(g, "--synthetic_tone_match", action="store_true",
                  help="the same rescaling for synthetic samples: their T/I brightness is the synthesis's random "
                  "draw (transmittance, reflection gain), so they then teach only what a global per-channel gain "
                  "cannot fix (where the reflection is), and the tone comes from the real pairs; off = upstream")
    add_flag_once(g, "--ndf", type=int, default=64, help="filters of the first PatchGAN layer")
    add_flag_once(g, "--n_layers_D", type=int, default=3, help="strided layers of the PatchGAN")
    add_flag_once(g, "--vgg", default="auto", choices=VGG_KINDS,
                  help="perceptual-loss backbone: vgg19 as upstream (needs torchvision's vgg19-dcbb9e9d.pth), vgg16 "
                  "(converted by `python -m util.backbones`), auto = vgg19 when its file is there, else vgg16")
    return parser


class NonFiniteLossError(UserError):
    """A loss became NaN or infinite: training stops before the optimiser step, no checkpoint is written."""


# ------------------------------------------------------------------------------------------------ RNG state
def capture_rng_state() -> dict:
    """Python, numpy, torch (and CUDA) global RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only where as many GPUs are visible)."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def masked_mean(errors: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-element ``errors`` (B, ...) over the samples where ``keep`` (B,) bool is true.

    Equals the plain mean when every sample is kept (or ``keep`` is None); 0 (still attached to the graph, so every
    parameter gets a gradient, as DistributedDataParallel requires) when none is. Each kept sample weighs the same.
    """
    per_sample = errors.flatten(1).mean(1)
    if keep is None:
        return per_sample.mean()
    weights = keep.to(per_sample.dtype)
    return (per_sample * weights).sum() / weights.sum().clamp(min=1)


def real_sample_weights(is_real: torch.Tensor | None, real_weight: float, batch: int, device) -> torch.Tensor | None:
    """(B,) float32 weights of the samples' T pixel terms: ``real_weight`` for real samples, 1 for synthetic ones;
    None (plain means) when the weight is 1 or the batch says nothing about realness."""
    if is_real is None or real_weight == 1.0:
        return None
    weights = torch.ones(batch, device=device)
    return torch.where(is_real.to(device).bool(), weights * real_weight, weights)


TONE_GAIN_RANGE = (0.5, 2.0)  # --*_tone_match: limits of the per-channel gain fitted to a sample's T target


def tone_match_samples(is_real: torch.Tensor | None, real: bool, synthetic: bool, batch: int) -> torch.Tensor | None:
    """(B,) bool: the samples whose T targets :func:`match_channel_gains` rescales, real ones where ``real``
    (``--real_tone_match``), synthetic ones where ``synthetic`` (``--synthetic_tone_match``); a batch without
    ``is_real`` is all synthetic. None where neither flag is on."""
    if not (real or synthetic):
        return None
    is_real = torch.zeros(batch, dtype=torch.bool) if is_real is None else is_real.bool()
    return (is_real & real) | (~is_real & synthetic)


def match_channel_gains(target: torch.Tensor, pred: torch.Tensor, samples: torch.Tensor | None,
                        gain_range: tuple[float, float] = TONE_GAIN_RANGE) -> torch.Tensor:
    """``--real_tone_match`` / ``--synthetic_tone_match``: ``target`` (B, C, H, W) with the channels of each sample
    that ``samples`` (B,) bool selects (:func:`tone_match_samples`) multiplied by the gain ``g`` that minimises
    ``|g * target - pred|^2`` (``g = <target, pred> / <target, target>``, from the detached prediction, clamped to
    ``gain_range``); the other samples, and every sample where ``samples`` is None, are returned unchanged. A gain
    without an offset: glass and exposure scale light, and an offset would also absorb a hazy reflection, which is
    what the network must learn to remove."""
    if samples is None:
        return target
    chosen = samples.to(target.device).bool()
    if not bool(chosen.any()):
        return target
    pred = pred.detach().to(target.dtype)
    gains = (target * pred).sum((2, 3)) / (target * target).sum((2, 3)).clamp(min=1e-8)
    gains = torch.where(chosen[:, None], gains.clamp(*gain_range), torch.ones_like(gains))
    return target * gains[:, :, None, None]


def weighted_mean(errors: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean over the batch of each sample's mean error (``errors`` (B, ...), or (B,) per-sample values) times its
    weight (``weights`` (B,) or None = all 1): a sample of weight w counts w times as much as in the plain mean;
    weight 0 removes it."""
    per_sample = errors.reshape(errors.shape[0], -1).mean(1)
    return per_sample.mean() if weights is None else (per_sample * weights).mean()


def psnr_balanced_mean(errors: torch.Tensor, eps: float = PSNR_LOSS_EPS,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """``--pixel_loss psnr``: the mean of per-sample errors ``errors`` (B, ...), each sample weighted by
    ``(mean_j e_j + eps) / (e_i + eps)`` (``e_i`` its mean error; weights detached).

    Its value is about the batch's mean error (so logs and loss weights read as for MSE), its gradient that of the mean
    per-sample log error (i.e. of mean PSNR, as NAFNet's PSNR loss) times the batch's mean error: every sample counts
    by its relative error, so a few samples far off (a real pair whose ground truth was shot at another exposure)
    cannot dominate as they do under MSE, whose optimum over such pairs is a global brightness change.
    ``weights`` (B,) (e.g. :func:`real_sample_weights`) multiply the samples' terms afterwards, as in
    :func:`weighted_mean`; samples of weight 0 do not enter the batch's mean error either.
    """
    per_sample = errors.flatten(1).mean(1)
    if weights is None:
        weights = torch.ones_like(per_sample)
    kept = weights > 0
    mean_error = (per_sample * kept).sum() / kept.sum().clamp(min=1)
    balance = ((mean_error + eps) / (per_sample + eps)).detach()
    return (weights * balance * per_sample).mean()


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def _cpu_state_dict(net) -> dict[str, torch.Tensor]:
    net = getattr(net, "module", net)
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


# ------------------------------------------------------------------------------------------------ trainer
class RAWRRTrainer:
    """Optimises a RAWRRModel's generator against a PatchGAN with upstream's losses.

    ``opt`` needs the training flags (options/train_options.py and :func:`add_training_options`) plus ``n_iters``.
    ``world_size`` > 1 wraps G and D in DistributedDataParallel (the process group must exist already; each process
    holds one device). Batches (``set_input``) are dicts from ``RawrrTrainDataset``:
    ``I_rgb``, ``T_rgb``, ``R_rgb``: (B, 3, H, W) float32 sRGB [0, 1];
    ``I_raw``, ``T_raw``, ``R_raw``: (B, 4, H/2, W/2) float32 packed [R, G1, G2, B], (x - black) / (white - black);
    ``is_real``: (B,) bool.
    """

    def __init__(self, model, opt, world_size: int = 1):
        self.model, self.opt = model, opt
        self.device = model.device
        self.precision = model.precision
        self.channels_last = model.channels_last
        self.world_size = int(world_size)
        self.save_dir = Path(model.save_dir)
        self.netG = model.netG_T
        self.netD = define_D(3, opt.ndf, opt.n_layers_D, opt.init_type, opt.init_gain, self.device)
        self.netD = to_memory_format(self.netD, self.channels_last)
        features, self.vgg_name = load_vgg_features(opt.vgg)
        self.perceptual = PerceptualLoss(features).to(self.device)
        self.perceptual = to_memory_format(self.perceptual, self.channels_last)
        self.gan_loss = LSGANLoss()
        betas = (opt.beta1, opt.beta2)
        self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=opt.lr, betas=betas)
        self.optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=opt.lr, betas=betas)
        self.scheduler_G = get_scheduler(self.optimizer_G, opt)
        self.scheduler_D = get_scheduler(self.optimizer_D, opt)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_G = DistributedDataParallel(self.netG, device_ids=ids)
            self.train_D = DistributedDataParallel(self.netD, device_ids=ids)
        else:
            self.train_G, self.train_D = self.netG, self.netD
        self.netG.train()
        self.netD.train()
        self.input: dict[str, torch.Tensor] = {}  # the batch on the device (set_input)
        # G's predictions of the last compute_losses, unclamped: T_pred_rgb, R_pred_rgb, T_pred_raw, R_pred_raw
        self.output: dict[str, torch.Tensor] = {}
        self.checkpoint_writes = 0
        self.repaired: list[Path] = []  # bare checkpoint files rewritten by load(..., repair=True)

    # ---------------------------------------------------------------- weights
    def init_generator_from(self, path) -> None:
        """Fine-tune from a generator file (e.g. the released final_net_G_T.pth); its width must match."""
        load_generator_weights(self.netG, path)

    def learning_rate(self) -> float:
        return float(self.optimizer_G.param_groups[0]["lr"])

    # ---------------------------------------------------------------- one step
    def set_input(self, batch: dict) -> None:
        non_blocking = self.device.type == "cuda"
        self.input = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, non_blocking=non_blocking)
                self.input[key] = to_memory_format(value, self.channels_last) if value.dim() == 4 else value

    def compute_losses(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Forward G, then the G and D losses of the current batch (no optimiser step). Returns (loss_G, loss_D,
        {name: 0-d tensor}) with the unweighted terms and the weighted totals ``G`` and ``D``."""
        opt, x = self.opt, self.input
        with autocast(self.device, self.precision):
            (R_pred_rgb, T_pred_rgb), (R_pred_raw, T_pred_raw) = self.train_G(x["I_rgb"], x["I_raw"])
        self.output = {"T_pred_rgb": T_pred_rgb, "R_pred_rgb": R_pred_rgb, "T_pred_raw": T_pred_raw,
                       "R_pred_raw": R_pred_raw}
        T_pred_rgb_f = T_pred_rgb.float()
        has_R = x.get("has_R")
        pixel_weights = real_sample_weights(x.get("is_real"), getattr(opt, "lambda_real_pixel", 1.0),
                                            T_pred_rgb_f.shape[0], T_pred_rgb_f.device)
        T_rgb, T_raw = x["T_rgb"], x["T_raw"]
        matched = tone_match_samples(x.get("is_real"), getattr(opt, "real_tone_match", False),
                                     getattr(opt, "synthetic_tone_match", False), T_rgb.shape[0])
        T_rgb = match_channel_gains(T_rgb, T_pred_rgb_f, matched)
        T_raw = match_channel_gains(T_raw, T_pred_raw.float(), matched)
        mse_T = F.mse_loss(T_pred_rgb_f, T_rgb, reduction="none")
        terms = {
            "G_MSE_T": (weighted_mean(mse_T, pixel_weights) if opt.pixel_loss == "mse"
                        else psnr_balanced_mean(mse_T, weights=pixel_weights)),
            "G_MSE_R": masked_mean(F.mse_loss(R_pred_rgb.float(), x["R_rgb"], reduction="none"), has_R),
            "G_raw_T": weighted_mean(F.l1_loss(T_pred_raw.float(), T_raw, reduction="none"), pixel_weights),
            "G_raw_R": masked_mean(F.l1_loss(R_pred_raw.float(), x["R_raw"], reduction="none"), has_R),
            "G_excl": exclusion_loss(T_pred_rgb, R_pred_rgb).mean(),
            "G_grad": weighted_mean(gradient_loss(T_pred_rgb_f, T_rgb), pixel_weights),
        }
        structure = curve_residual(T_pred_rgb_f - T_rgb, x["I_rgb"]).square()
        terms["G_struct"] = (weighted_mean(structure, pixel_weights) if opt.pixel_loss == "mse"
                             else psnr_balanced_mean(structure, weights=pixel_weights))
        # G's adversarial term through the plain D (no DDP hooks: D's parameters get no gradient from it)
        self.netD.requires_grad_(False)
        with autocast(self.device, self.precision):
            terms["G_VGG"] = self.perceptual(T_pred_rgb, T_rgb)
            terms["G_GAN"] = self.gan_loss(self.netD(T_pred_rgb), True)
        self.netD.requires_grad_(True)
        loss_G = (opt.lambda_mse_T * terms["G_MSE_T"] + opt.lambda_mse_R * terms["G_MSE_R"]
                  + opt.lambda_vgg * terms["G_VGG"] + opt.lambda_gan * terms["G_GAN"]
                  + opt.lambda_raw * (terms["G_raw_T"] + terms["G_raw_R"])
                  + getattr(opt, "lambda_exclusion", 0.0) * terms["G_excl"]
                  + getattr(opt, "lambda_grad", 0.0) * terms["G_grad"]
                  + getattr(opt, "lambda_structure", 0.0) * terms["G_struct"])
        # D on real and fake in one call (instance norm is per sample, so this equals two calls)
        batch = x["T_rgb"].shape[0]
        with autocast(self.device, self.precision):
            scores = self.train_D(torch.cat([x["T_rgb"], T_pred_rgb.detach()], 0))
        terms["D_real"] = self.gan_loss(scores[:batch], True)
        terms["D_fake"] = self.gan_loss(scores[batch:], False)
        loss_D = (terms["D_real"] + terms["D_fake"]) / 2
        terms["G"], terms["D"] = loss_G, loss_D
        return loss_G, loss_D, terms

    def optimize_parameters(self, iteration: int) -> dict[str, float]:
        """One step of G and D on the current batch (``iteration`` = the number of this step, for messages).

        Both losses are computed before either network changes (equivalent to upstream's G-then-D order: D's loss
        uses the detached fake and D's weights from before the G step). A non-finite loss on any process raises
        :class:`NonFiniteLossError` before any weight or optimiser state changes.
        """
        loss_G, loss_D, terms = self.compute_losses()
        values = torch.stack([terms[k].detach().float() for k in LOSS_NAMES])
        finite = torch.isfinite(values).all().to(torch.int32)
        if self.world_size > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if not bool(finite):
            bad = [f"{k}={v:.4g}" for k, v in zip(LOSS_NAMES, values.tolist(), strict=True) if not np.isfinite(v)]
            raise NonFiniteLossError(
                f"non-finite loss at iteration {iteration} ({', '.join(bad) or 'on another process'}); training "
                "stopped before that step and wrote no checkpoint: resume from the last good one with "
                "--continue_train, with a lower --lr, --max_grad_norm or --precision fp32"
            )
        self._step(loss_G, self.optimizer_G, self.netG)
        self._step(loss_D, self.optimizer_D, self.netD)
        self.scaler.update()
        with warnings.catch_warnings():
            # fp16: the GradScaler skips the optimiser step of an overflowing iteration; the schedule still counts it
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            self.scheduler_G.step()
            self.scheduler_D.step()
        out = dict(zip(LOSS_NAMES, values.tolist(), strict=True))
        if "is_real" in self.input:
            out["real_fraction"] = float(self.input["is_real"].float().mean())
        if "has_R" in self.input:
            out["R_fraction"] = float(self.input["has_R"].float().mean())
        return out

    def _step(self, loss, optimizer, net) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.opt.max_grad_norm > 0:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), self.opt.max_grad_norm)
        self.scaler.step(optimizer)

    def get_current_visuals(self) -> dict[str, torch.Tensor]:
        """First sample of the batch, in :data:`DISPLAY_NAMES` order, CPU float32 clamped to [0, 1]: the input
        ``I_rgb`` (3, H, W) sRGB and ``I_raw`` (4, H/2, W/2) packed; the predictions ``T_pred_rgb``, ``R_pred_rgb``,
        ``T_pred_raw``; the ground truth ``T_rgb``, ``R_rgb``, ``T_raw``. Empty before the first step. The dashboard
        shows them under their display names (:meth:`display_visuals`)."""
        x, y = self.input, self.output
        if not y:
            return {}
        found = {**{k: x[k] for k in ("I_rgb", "T_rgb", "R_rgb", "I_raw", "T_raw")}, **y}
        return {k: found[k][0].detach().float().clamp(0, 1).cpu() for k in DISPLAY_NAMES}

    def display_visuals(self) -> dict[str, torch.Tensor]:
        """:meth:`get_current_visuals` under the names the dashboard shows (:data:`DISPLAY_NAMES`)."""
        return {DISPLAY_NAMES[k]: v for k, v in self.get_current_visuals().items()}

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self, progress: dict) -> dict:
        """The training state: G, D, both optimisers and schedulers, the GradScaler, RNG states, the run's
        ``progress`` (iteration, epoch, ... as train.py defines it) and the architecture."""
        opt = self.opt
        return {
            "format": TRAIN_STATE_FORMAT,
            "arch": {"ngf": self.netG.ngf, "num_cab": self.netG.num_cab, "ndf": opt.ndf, "n_layers_D": opt.n_layers_D},
            "progress": dict(progress),
            "net_G_T": _cpu_state_dict(self.netG),
            "net_D": _cpu_state_dict(self.netD),
            "optimizer_G": self.optimizer_G.state_dict(),
            "optimizer_D": self.optimizer_D.state_dict(),
            "scheduler_G": self.scheduler_G.state_dict(),
            "scheduler_D": self.scheduler_D.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
        }

    def paths(self, label) -> dict[str, Path]:
        return set_paths(self.save_dir, label)

    def save(self, label, progress: dict) -> dict[str, Path]:
        """Write ``<label>_net_G_T.pth``, ``<label>_net_D.pth`` and ``<label>_train_state.pth`` as one set
        (:func:`models.checkpoint_sets.write_set`: all three of one iteration, or the previous set unchanged)."""
        paths = write_set(self.save_dir, label, self.state_dict(progress))
        self.checkpoint_writes += 1
        return paths

    def load(self, label, repair: bool = False) -> dict:
        """Restore everything from ``<label>_train_state.pth``; returns its ``progress`` dict.

        ``repair``: also rewrite ``<label>_net_G_T.pth`` / ``<label>_net_D.pth`` where they differ from the train
        state (the authority); the files rewritten are left in ``self.repaired``. Raises :class:`UserError` when the
        file is missing, unreadable, or from a network of another shape.
        """
        path = self.paths(label)["train_state"]
        if not path.is_file():
            raise UserError(
                f"--continue_train: nothing to resume, {path} does not exist; check --name/--checkpoints_dir/--epoch "
                "or start a new run without --continue_train"
            )
        # one UserError line "cannot read training state <path>: ..." for an empty, truncated, corrupt or unsafe file
        # (never torch's advice to load it with weights_only=False)
        state = safe_torch_load(path, "training state")
        if not isinstance(state, dict) or state.get("format") != TRAIN_STATE_FORMAT:
            raise UserError(f"{path} is not a training state of this version (format {TRAIN_STATE_FORMAT})")
        self._check_arch(state, path)
        self.netG.load_state_dict(state["net_G_T"], strict=True)
        self.netD.load_state_dict(state["net_D"], strict=True)
        self.optimizer_G.load_state_dict(state["optimizer_G"])
        self.optimizer_D.load_state_dict(state["optimizer_D"])
        self.scheduler_G.load_state_dict(state["scheduler_G"])
        self.scheduler_D.load_state_dict(state["scheduler_D"])
        if state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        restore_rng_state(state["rng"])
        self.repaired = sync_members(self.save_dir, label, state) if repair else []
        return dict(state["progress"])

    def _check_arch(self, state, path) -> None:
        ngf, num_cab = infer_generator_shape(state["net_G_T"], path)
        saved = {"ngf": ngf, "num_cab": num_cab, "ndf": state["arch"]["ndf"], "n_layers_D": state["arch"]["n_layers_D"]}
        own = {"ngf": self.netG.ngf, "num_cab": self.netG.num_cab, "ndf": self.opt.ndf,
               "n_layers_D": self.opt.n_layers_D}
        if saved != own:
            flags = " ".join(f"--{k} {v}" for k, v in saved.items())
            mine = " ".join(f"--{k} {v}" for k, v in own.items())
            raise UserError(
                f"cannot resume from {path}: it holds networks with {flags}, this run builds {mine}; "
                f"pass {flags} (or leave them out: the folder's architecture.json or train_opt.txt gives them) or use "
                "a new --name"
            )
