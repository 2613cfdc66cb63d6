"""Training: losses and PatchGAN, one optimisation step, exact resume, atomic checkpoints, failure modes, and the
train -> test.py round trip, on a tiny generator (ngf 8, one DCAB) and 64 px crops of generated photos."""

import hashlib
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import test as test_script
import train as train_script
from models.architecture import read_architecture
from models.checkpoint import load_state_dict_file
from models.discriminator import NLayerDiscriminator
from models.losses import PERCEPTUAL_WEIGHTS, LSGANLoss, PerceptualLoss
from models.rawrr_training import LOSS_NAMES, NonFiniteLossError, RAWRRTrainer
from options.base_options import read_saved_options
from tests.tiny_data import make_test_set, smooth_image
from util.backbones import load_vgg_features
from util.errors import UserError

N_ITERS = 4  # the reference run; the interrupted run stops after N_ITERS // 2, mid-epoch (3 iterations per epoch)
SAMPLES_PER_EPOCH = 6
PHOTO_SIZE = 96


def write_photos(folder: Path, n: int = 4, seed: int = 0) -> Path:
    """``n`` PHOTO_SIZE x PHOTO_SIZE PNGs of smooth random colour fields (sources for synthesis)."""
    from util.image_io import write_rgb

    rng = np.random.default_rng(seed)
    for i in range(n):
        image = smooth_image(rng, PHOTO_SIZE, PHOTO_SIZE)
        write_rgb(folder / f"photo{i}.png", (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return folder


def train_args(photos, checkpoints, name, *extra):
    return ["--dataroot", str(photos), "--name", name, "--checkpoints_dir", str(checkpoints),
            "--ngf", "8", "--num_cab", "1", "--crop_size", "64", "--batch_size", "2",
            "--samples_per_epoch", str(SAMPLES_PER_EPOCH), "--vgg", "vgg16", "--num_threads", "0",
            "--gpu_ids", "-1", "--precision", "fp32", "--print_freq", "1", "--display_freq", "2",
            "--save_latest_freq", "100", "--save_epoch_freq", "0", *extra]


def without(args, *flags):
    """``args`` without the given flags and their values."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        else:
            out.append(a)
    return out


def file_sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: fast on a loaded 2-core machine, and the same count in every run compared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("training")
    photos = write_photos(base / "photos")
    val = make_test_set(base / "val", n=2, h=64, w=64)
    return base, photos, val


@pytest.fixture(scope="module")
def reference_run(setup):
    """N_ITERS uninterrupted iterations with validation at the end and a checkpoint per epoch."""
    base, photos, val = setup
    result = train_script.main(train_args(photos, base / "ck", "ref", "--n_iters", str(N_ITERS),
                                          "--save_epoch_freq", "1", "--val_dataroot", str(val),
                                          "--val_resize", "none", "--val_freq", "0"))
    return result


def make_trainer(photos, checkpoints, *extra):
    from data import create_dataset
    from models import create_model
    from options.train_options import TrainOptions

    opt = TrainOptions().parse(train_args(photos, checkpoints, "unit", *extra), save=False)
    opt.rank, opt.n_iters = 0, 10
    torch.manual_seed(0)
    dataset = create_dataset(opt)
    trainer = RAWRRTrainer(create_model(opt), opt)
    items = [dataset[i] for i in range(2)]
    batch = {k: torch.stack([it[k] for it in items]) for k, v in items[0].items() if isinstance(v, torch.Tensor)}
    return trainer, batch


# ------------------------------------------------------------------------------------------ building blocks
def test_patchgan_is_the_pix2pix_architecture():
    net = NLayerDiscriminator(3, 64, 3)
    assert sum(p.numel() for p in net.parameters()) == 2_764_737  # pix2pix's PatchGAN, ndf 64, 3 layers
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules()) == 3
    assert all(m.kernel_size == (4, 4) for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert [m.stride for m in net.modules() if isinstance(m, torch.nn.Conv2d)] == [(2, 2)] * 3 + [(1, 1)] * 2
    assert net(torch.rand(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # 70x70 patches


def test_lsgan_and_perceptual_loss_values():
    gan = LSGANLoss()
    scores = torch.full((2, 1, 5, 5), 0.25)
    assert gan(scores, True).item() == pytest.approx(0.75**2)
    assert gan(scores, False).item() == pytest.approx(0.25**2)

    features, name = load_vgg_features("vgg16")
    assert name == "vgg16"
    loss = PerceptualLoss(features)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 3, 32, 32, generator=gen), torch.rand(1, 3, 32, 32, generator=gen)
    assert loss(a, a).item() == 0
    # by hand: relu1_1 = features[0:2], relu2_1 = features[0:7], on the [0, 1] images without normalisation
    f1a, f1b = features[:2](a), features[:2](b)
    f2a, f2b = features[:7](a), features[:7](b)
    expected = (PERCEPTUAL_WEIGHTS[0] * (f1a - f1b).abs().mean() + PERCEPTUAL_WEIGHTS[1] * (f2a - f2b).abs().mean())
    assert loss(a, b).item() == pytest.approx(expected.item(), rel=1e-5)
    assert PERCEPTUAL_WEIGHTS == pytest.approx((1 / 2.6, 1 / 4.8))
    assert not any(p.requires_grad for p in loss.parameters())


def test_one_step_updates_g_and_d_with_finite_losses(setup, tmp_path):
    base, photos, _ = setup
    trainer, batch = make_trainer(photos, tmp_path)
    g0 = {k: v.clone() for k, v in trainer.netG.state_dict().items()}
    d0 = {k: v.clone() for k, v in trainer.netD.state_dict().items()}
    vgg0 = {k: v.clone() for k, v in trainer.perceptual.state_dict().items()}
    trainer.set_input(batch)
    losses = trainer.optimize_parameters(1)
    assert set(LOSS_NAMES) <= set(losses)
    assert all(np.isfinite(losses[k]) for k in LOSS_NAMES)
    assert all(losses[k] > 0 for k in LOSS_NAMES)
    opt = trainer.opt
    total = (losses["G_MSE_T"] + losses["G_MSE_R"] + opt.lambda_vgg * losses["G_VGG"]
             + opt.lambda_gan * losses["G_GAN"] + losses["G_raw_T"] + losses["G_raw_R"])
    assert losses["G"] == pytest.approx(total, rel=1e-5)  # G_excl and G_grad are logged, their weights are 0 by default
    assert losses["D"] == pytest.approx((losses["D_real"] + losses["D_fake"]) / 2, rel=1e-5)
    assert losses["real_fraction"] == 0  # photos only: every sample synthetic
    changed_g = [k for k, v in trainer.netG.state_dict().items() if not torch.equal(v, g0[k])]
    changed_d = [k for k, v in trainer.netD.state_dict().items() if not torch.equal(v, d0[k])]
    # (at ngf 8 a few 2-channel attention bottlenecks start with dead ReLUs and get no gradient)
    assert len(changed_g) > 0.75 * len(g0) and len(changed_d) == len(d0)
    assert {"tail_t.weight", "tail_r.weight", "stage1_tconv.weight", "stage1_rconv.weight"} <= set(changed_g)
    assert_same_tensors(trainer.perceptual.state_dict(), vgg0)  # the VGG is frozen
    assert trainer.scheduler_G.last_epoch == 1 and trainer.learning_rate() == pytest.approx(1e-4)
    visuals = trainer.get_current_visuals()
    assert visuals["T_pred_rgb"].shape == (3, 64, 64) and visuals["T_pred_raw"].shape == (4, 32, 32)
    assert torch.equal(visuals["T_rgb"], batch["T_rgb"][0].clamp(0, 1))  # the ground truth under the batch's name
    # the dashboard keeps its names: T_rgb is the prediction there, T_gt_rgb the ground truth
    shown = trainer.display_visuals()
    assert list(shown) == ["I_rgb", "T_rgb", "T_gt_rgb", "R_rgb", "R_gt_rgb", "I_raw", "T_raw", "T_gt_raw"]
    assert torch.equal(shown["T_rgb"], visuals["T_pred_rgb"]) and torch.equal(shown["T_gt_raw"], visuals["T_raw"])


def test_r_losses_are_masked_per_sample(setup, tmp_path):
    base, photos, _ = setup
    trainer, batch = make_trainer(photos, tmp_path)
    trainer.set_input(batch)
    _, _, full = trainer.compute_losses()
    out = trainer.output
    per_sample_mse = ((out["R_pred_rgb"].float() - batch["R_rgb"]) ** 2).flatten(1).mean(1)
    per_sample_l1 = (out["R_pred_raw"].float() - batch["R_raw"]).abs().flatten(1).mean(1)
    assert full["G_MSE_R"].item() == pytest.approx(per_sample_mse.mean().item(), rel=1e-5)
    # the second sample without R: its R terms leave the loss, the first sample's stay
    batch = dict(batch, has_R=torch.tensor([True, False]))
    batch["R_rgb"] = batch["R_rgb"].clone()
    batch["R_rgb"][1] = 0
    trainer.set_input(batch)
    _, _, masked = trainer.compute_losses()
    assert masked["G_MSE_R"].item() == pytest.approx(per_sample_mse[0].item(), rel=1e-5)
    assert masked["G_raw_R"].item() == pytest.approx(per_sample_l1[0].item(), rel=1e-5)
    assert masked["G_MSE_T"].item() == pytest.approx(full["G_MSE_T"].item(), rel=1e-6)
    # no sample with R: both R terms are 0, and every generator parameter still takes part in the graph
    trainer.set_input(dict(batch, has_R=torch.tensor([False, False])))
    loss_G, _, none = trainer.compute_losses()
    assert none["G_MSE_R"].item() == 0 and none["G_raw_R"].item() == 0
    loss_G.backward()
    assert all(p.grad is not None for p in trainer.netG.parameters())


def test_psnr_pixel_loss_weighs_samples_by_relative_error():
    from models.rawrr_training import PSNR_LOSS_EPS, psnr_balanced_mean

    errors = torch.tensor([[0.001, 0.003], [0.05, 0.07]], requires_grad=True)  # per-element errors of 2 samples
    loss = psnr_balanced_mean(errors)
    assert loss.item() == pytest.approx(errors.mean().item(), rel=0.05)  # reads about as the mean error
    loss.backward()
    per_sample = errors.detach().mean(1)
    # the gradient of mean_i log(e_i + eps), scaled by the batch's mean error: sample 0 (20x smaller error) gets a
    # 20x larger gradient per element, where MSE would give both the same
    expected = (per_sample.mean() + PSNR_LOSS_EPS) / (per_sample + PSNR_LOSS_EPS) / errors.numel()
    torch.testing.assert_close(errors.grad, expected[:, None].expand(2, 2), rtol=1e-5, atol=0)
    ratio = (0.06 + PSNR_LOSS_EPS) / (0.002 + PSNR_LOSS_EPS)
    assert (errors.grad[0, 0] / errors.grad[1, 0]).item() == pytest.approx(ratio, rel=1e-4)


def test_exclusion_loss_is_high_for_shared_edges_and_low_for_separate_ones():
    from models.losses import exclusion_loss

    gen = torch.Generator().manual_seed(0)

    def blocks():  # piecewise-constant scenes: sparse edges, as in photographs
        image = torch.zeros(2, 3, 64, 64)
        for _ in range(6):
            y, x = torch.randint(0, 48, (2,), generator=gen).tolist()
            image[..., y:y + 16, x:x + 16] += torch.rand(2, 3, 1, 1, generator=gen)
        return image

    a, b = blocks(), blocks()
    shared = exclusion_loss(a, 0.3 * a)  # "R is a dim copy of I": every edge in both layers
    separate = exclusion_loss(a, b)  # independent scenes: edges overlap only by chance
    assert shared.shape == (2,) and bool((shared > 3 * separate).all())
    assert float(exclusion_loss(a, torch.full_like(a, 0.5)).max()) < 1e-3  # an edgeless layer shares nothing
    # about invariant to the layers' scales, and differentiable in both layers
    torch.testing.assert_close(exclusion_loss(a, 0.3 * a), exclusion_loss(a, 3.0 * a), rtol=0.02, atol=0)
    T, R = a.clone().requires_grad_(), b.clone().requires_grad_()
    exclusion_loss(T, R).sum().backward()
    assert T.grad.abs().sum() > 0 and R.grad.abs().sum() > 0


def test_gradient_loss_sees_edges_not_brightness():
    from models.losses import gradient_loss

    gen = torch.Generator().manual_seed(1)
    scene = torch.zeros(2, 3, 64, 64)
    scene[..., 16:40, 20:44] = 0.6
    edge = torch.zeros_like(scene)
    edge[..., 30:34, :] = 0.3  # a thin reflection-like stripe with sharp edges
    assert torch.count_nonzero(gradient_loss(scene, scene)) == 0
    assert float(gradient_loss(scene + 0.2, scene).max()) < 1e-6  # an offset has no edges
    kept = gradient_loss(scene + edge, scene)  # the stripe left in T
    assert kept.shape == (2,) and bool((kept > 0.005).all())
    # a per-channel gain changes it only in proportion to the scene's own edges
    gain = torch.tensor([0.9, 0.8, 0.7]).view(1, 3, 1, 1)
    torch.testing.assert_close(gradient_loss(scene * gain, scene), 0.2 * gradient_loss(torch.zeros_like(scene), scene))
    pred = (scene + 0.1 * torch.rand(scene.shape, generator=gen)).requires_grad_()
    gradient_loss(pred, scene).sum().backward()
    assert pred.grad.abs().sum() > 0


def test_curve_residual_drops_tone_curves_and_keeps_structure():
    """The error that no per-channel curve of the input explains: zero for any curve of the input (a gain, a gamma),
    a reflection-like stripe kept, the same projection as util.tone.curve_image, and differentiable."""
    from models.losses import curve_residual
    from util.tone import curve_image

    gen = torch.Generator().manual_seed(2)
    inp = torch.rand(2, 3, 32, 48, generator=gen)
    inp = torch.round(inp * 255) / 255  # 8-bit values, one bin each
    for curve in (inp * 0.8, inp ** 1.7, torch.tensor([0.9, 0.7, 1.0]).view(1, 3, 1, 1) * inp - 0.05):
        assert float(curve_residual(curve, inp).abs().max()) < 1e-5
    stripe = torch.zeros_like(inp)
    stripe[..., 10:14, :] = 0.3  # a structure that does not follow the input's values
    kept = curve_residual(stripe, inp)
    assert float(kept.square().mean()) > 0.5 * float((stripe - stripe.mean()).square().mean())
    target = torch.rand(2, 3, 32, 48, generator=gen)
    as_image = (inp[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    fitted = curve_image(as_image, (target[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    projected = (target - curve_residual(target, inp))[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(projected - fitted).max() <= 1.0  # util.tone's curve, up to its 8-bit target and rounding
    pred = torch.rand(2, 3, 32, 48, generator=gen).requires_grad_()
    curve_residual(pred - target, inp).square().mean().backward()
    assert pred.grad.abs().sum() > 0


def test_exclusion_gradient_and_real_pixel_weight_enter_the_generator_loss(setup, tmp_path):
    from models.losses import curve_residual, gradient_loss

    base, photos, _ = setup
    trainer, batch = make_trainer(photos, tmp_path)
    trainer.set_input(batch)
    torch.manual_seed(0)
    _, _, plain = trainer.compute_losses()
    out = trainer.output
    per_sample_mse = ((out["T_pred_rgb"].float() - batch["T_rgb"]) ** 2).flatten(1).mean(1)
    per_sample_l1 = (out["T_pred_raw"].float() - batch["T_raw"]).abs().flatten(1).mean(1)
    per_sample_grad = gradient_loss(out["T_pred_rgb"].float(), batch["T_rgb"])
    assert plain["G_excl"].item() > 0 and plain["G_grad"].item() > 0
    assert plain["G_grad"].item() == pytest.approx(per_sample_grad.mean().item(), rel=1e-5)
    # lambda_exclusion adds its weighted term to G, nothing else changes
    trainer.opt.lambda_exclusion = 0.5
    torch.manual_seed(0)
    _, _, excl = trainer.compute_losses()
    assert excl["G"].item() == pytest.approx(plain["G"].item() + 0.5 * plain["G_excl"].item(), rel=1e-5)
    trainer.opt.lambda_exclusion = 0.0
    trainer.opt.lambda_grad = 2.0  # so does lambda_grad
    torch.manual_seed(0)
    _, _, grad = trainer.compute_losses()
    assert grad["G"].item() == pytest.approx(plain["G"].item() + 2.0 * plain["G_grad"].item(), rel=1e-5)
    trainer.opt.lambda_grad = 0.0
    per_sample_struct = curve_residual(out["T_pred_rgb"].float() - batch["T_rgb"], batch["I_rgb"]).square()
    assert plain["G_struct"].item() == pytest.approx(per_sample_struct.mean().item(), rel=1e-5)
    assert 0 < plain["G_struct"].item() < plain["G_MSE_T"].item()  # a part of the pixel error
    trainer.opt.lambda_structure = 3.0  # and lambda_structure
    torch.manual_seed(0)
    _, _, struct = trainer.compute_losses()
    assert struct["G"].item() == pytest.approx(plain["G"].item() + 3.0 * plain["G_struct"].item(), rel=1e-5)
    trainer.opt.lambda_structure = 0.0
    # a real sample's T pixel terms scale by lambda_real_pixel (0: they leave the loss); synthetic ones keep weight 1
    trainer.opt.lambda_real_pixel = 0.0
    trainer.set_input(dict(batch, is_real=torch.tensor([False, True])))
    torch.manual_seed(0)
    _, _, real = trainer.compute_losses()
    assert real["G_MSE_T"].item() == pytest.approx(per_sample_mse[0].item() / 2, rel=1e-5)
    assert real["G_raw_T"].item() == pytest.approx(per_sample_l1[0].item() / 2, rel=1e-5)
    assert real["G_grad"].item() == pytest.approx(per_sample_grad[0].item() / 2, rel=1e-5)  # a T pixel term too
    assert real["G_VGG"].item() == pytest.approx(plain["G_VGG"].item(), rel=1e-5)
    trainer.opt.pixel_loss = "psnr"  # the PSNR-balanced loss: a weight-0 sample drops out of its batch mean too
    torch.manual_seed(0)
    _, _, balanced = trainer.compute_losses()
    assert balanced["G_MSE_T"].item() == pytest.approx(per_sample_mse[0].item() / 2, rel=1e-4)


def test_match_channel_gains_rescales_real_targets_only():
    from models.rawrr_training import match_channel_gains

    gen = torch.Generator().manual_seed(3)
    pred = torch.rand(3, 3, 16, 16, generator=gen) * 0.8 + 0.1
    gains = torch.tensor([[0.8, 0.7, 0.9], [1.2, 1.0, 0.6], [0.9, 0.9, 0.9]])
    target = pred / gains[:, :, None, None]  # the same picture, shot darker or brighter per channel
    is_real = torch.tensor([True, True, False])
    matched = match_channel_gains(target, pred, is_real)
    torch.testing.assert_close(matched[:2], pred[:2])  # real: brought back to the prediction's level exactly
    assert torch.equal(matched[2], target[2])  # synthetic: untouched
    assert match_channel_gains(target, pred, None) is target
    assert torch.equal(match_channel_gains(target, pred, torch.zeros(3, dtype=torch.bool)), target)
    # no offset: a haze that the network should remove is not absorbed; and the gain is clamped
    hazy = match_channel_gains(pred + 0.3, pred, is_real)
    assert float((hazy[:2] - pred[:2]).abs().mean()) > 0.05
    far = match_channel_gains(pred * 10, pred, is_real)
    torch.testing.assert_close(far[:2], pred[:2] * 10 * 0.5)


def test_real_tone_match_leaves_synthetic_losses_and_removes_a_real_exposure_change(setup, tmp_path):
    base, photos, _ = setup
    trainer, batch = make_trainer(photos, tmp_path)
    trainer.opt.real_tone_match = True
    trainer.set_input(dict(batch, is_real=torch.tensor([False, False])))
    torch.manual_seed(0)
    _, _, synthetic = trainer.compute_losses()
    trainer.opt.real_tone_match = False
    torch.manual_seed(0)
    _, _, off = trainer.compute_losses()
    for name in ("G_MSE_T", "G_raw_T", "G_VGG"):
        assert synthetic[name].item() == pytest.approx(off[name].item(), rel=1e-6), name
    # a real pair whose ground truth was shot 30 % darker: with the match that costs nothing, without it a lot
    darker = dict(batch, is_real=torch.tensor([True, True]), T_rgb=batch["T_rgb"] * 0.7, T_raw=batch["T_raw"] * 0.7)
    losses = {}
    for match in (False, True):
        trainer.opt.real_tone_match = match
        trainer.set_input(darker)
        torch.manual_seed(0)
        losses[match] = trainer.compute_losses()[2]
    assert losses[True]["G_MSE_T"].item() < 0.8 * losses[False]["G_MSE_T"].item()
    assert losses[True]["G_raw_T"].item() < losses[False]["G_raw_T"].item()


def test_tone_match_samples_follows_the_two_flags():
    from models.rawrr_training import tone_match_samples

    is_real = torch.tensor([True, False, True])
    assert tone_match_samples(is_real, False, False, 3) is None
    assert tone_match_samples(is_real, True, False, 3).tolist() == [True, False, True]
    assert tone_match_samples(is_real, False, True, 3).tolist() == [False, True, False]
    assert tone_match_samples(is_real, True, True, 3).tolist() == [True, True, True]
    assert tone_match_samples(None, False, True, 2).tolist() == [True, True]  # no is_real: all synthetic
    assert tone_match_samples(None, True, False, 2).tolist() == [False, False]


def test_synthetic_tone_match_removes_a_synthetic_brightness_error_and_leaves_real_samples(setup, tmp_path):
    base, photos, _ = setup
    trainer, batch = make_trainer(photos, tmp_path)
    # a target 30 % darker than the scene: with the match a global gain costs nothing, without it a lot
    darker = dict(batch, T_rgb=batch["T_rgb"] * 0.7, T_raw=batch["T_raw"] * 0.7)
    losses = {}
    for real, match in ((False, False), (False, True), (True, True)):
        trainer.opt.synthetic_tone_match = match
        trainer.set_input(dict(darker, is_real=torch.tensor([real, real])))
        torch.manual_seed(0)
        losses[real, match] = trainer.compute_losses()[2]
    assert losses[False, True]["G_MSE_T"].item() < 0.8 * losses[False, False]["G_MSE_T"].item()
    assert losses[False, True]["G_raw_T"].item() < losses[False, False]["G_raw_T"].item()
    for name in ("G_MSE_T", "G_raw_T", "G_VGG"):  # real samples: --synthetic_tone_match leaves them alone
        assert losses[True, True][name].item() == pytest.approx(losses[False, False][name].item(), rel=1e-6), name


def test_pairs_only_real_folder_trains(setup, tmp_path):
    """A real folder of I/T pairs only (no RAW, no R), as Zhang et al.'s blended/transmission, trains: RAW from
    the inverse ISP, R losses off for those samples."""
    from util.image_io import write_rgb

    base, photos, _ = setup
    rng = np.random.default_rng(4)
    for stem in ("p1", "p2"):
        for folder in ("blended", "transmission"):
            image = smooth_image(rng, 80, 96).permute(1, 2, 0).numpy()
            write_rgb(tmp_path / "pairs" / folder / f"{stem}.jpg", (image * 255).round().astype(np.uint8))
    result = train_script.main(train_args(photos, tmp_path / "ck", "pairs", "--n_iters", "3", "--real_ratio", "1",
                                          "--real_dataroot", str(tmp_path / "pairs")))
    assert result["iteration"] == 3
    lines = [line for line in (tmp_path / "ck" / "pairs" / "loss_log.txt").read_text().splitlines()
             if line.startswith("iteration ")]
    assert len(lines) == 3
    for line in lines:
        values = dict(zip(line.split()[2::2], map(float, line.split()[3::2]), strict=True))
        assert values["G_MSE_R"] == 0 and values["G_raw_R"] == 0  # no R target: the R losses are off
        assert values["G_MSE_T"] > 0 and values["G_raw_T"] > 0 and values["G_VGG"] > 0  # T losses, pseudo-RAW
        assert values["real_fraction"] == 1 and values["R_fraction"] == 0
    assert (tmp_path / "ck" / "pairs" / "final_net_G_T.pth").is_file()


def test_options_defaults_follow_upstream(setup, tmp_path):
    from options.train_options import TrainOptions

    _, photos, _ = setup
    opt = TrainOptions().parse(["--dataroot", str(photos), "--checkpoints_dir", str(tmp_path)], save=False)
    assert (opt.lr, opt.beta1, opt.beta2, opt.batch_size, opt.n_epochs) == (1e-4, 0.5, 0.999, 2, 80)
    assert (opt.lambda_gan, opt.lambda_vgg, opt.lambda_raw, opt.lambda_mse_T, opt.lambda_mse_R) == (0.01, 1, 1, 1, 1)
    assert (opt.ndf, opt.n_layers_D, opt.lr_policy, opt.num_threads, opt.display_id) == (64, 3, "constant", 2, 0)
    assert (opt.ngf, opt.num_cab, opt.samples_per_epoch, opt.epoch) == (64, 8, 4000, "latest")


# ------------------------------------------------------------------------------------------ runs
def test_reference_run_writes_checkpoints_logs_and_validation(setup, reference_run):
    base, _, val = setup
    exp = base / "ck" / "ref"
    assert reference_run["iteration"] == N_ITERS and reference_run["vgg"] == "vgg16"
    for label in ("latest", "final", "1"):  # epoch 1 ends at iteration 3
        for kind in ("net_G_T", "net_D", "train_state"):
            assert (exp / f"{label}_{kind}.pth").is_file(), (label, kind)
    assert not list(exp.glob(".*tmp"))
    g = load_state_dict_file(exp / "final_net_G_T.pth")  # bare CPU state_dict
    assert not any(k.startswith("module.") for k in g) and all(v.device.type == "cpu" for v in g.values())
    assert_same_tensors(g, load_state_dict_file(exp / "latest_net_G_T.pth"))
    state = torch.load(exp / "final_train_state.pth", weights_only=True)
    assert state["progress"]["iteration"] == N_ITERS
    assert (state["progress"]["epoch"], state["progress"]["epoch_step"]) == (2, 1)
    assert state["progress"]["iters_per_epoch"] == SAMPLES_PER_EPOCH // 2
    assert_same_tensors(state["net_G_T"], g)
    saved = read_saved_options(exp / "train_opt.txt")
    assert (saved["ngf"], saved["num_cab"], saved["n_iters"]) == ("8", "1", str(N_ITERS))
    assert (read_architecture(exp)["ngf"], read_architecture(exp)["num_cab"]) == (8, 1)
    log = (exp / "loss_log.txt").read_text()
    assert all(f"iteration {i}: G " in log for i in range(1, N_ITERS + 1))
    assert (exp / "web" / "index.html").is_file() and len(list((exp / "web" / "images").glob("iter*_T_rgb.png"))) == 2
    rows = (exp / "val_log.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,epoch,set,images,T_psnr") and rows[1].startswith(f"{N_ITERS},2,val,2,")
    assert rows[0].endswith("gain_psnr,worst_gain_psnr,tone_psnr,separation_psnr,tone_ratio,beyond_curve_psnr,"
                            "curve_fidelity_psnr") and len(rows) == 2
    val = reference_run["val"]["val"]
    assert val["images"] == 2 and val["gain_psnr"] == pytest.approx(val["T_psnr"] - val["I_psnr"])
    assert val["worst_gain_psnr"] <= val["gain_psnr"] + 1e-9 and 0 < val["T_lpips"] < 1
    assert val["separation_psnr"] == pytest.approx(val["T_psnr"] - val["tone_psnr"]) and val["tone_ratio"] > 0
    assert math.isfinite(val["beyond_curve_psnr"]) and val["curve_fidelity_psnr"] > 0
    assert (exp / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_final_weights_load_in_test_py_with_the_same_metrics(setup, reference_run, tmp_path):
    base, _, val = setup
    # --precision fp32 as trained: auto is bf16 on AMX CPUs
    summary = test_script.main(["--dataroot", str(val), "--name", "ref", "--checkpoints_dir", str(base / "ck"),
                                "--results_dir", str(tmp_path), "--gpu_ids", "-1", "--eval_resize", "none",
                                "--no_lpips", "--epoch", "final", "--precision", "fp32"])
    assert (summary["ngf"], summary["num_cab"], summary["num_images"]) == (8, 1, 2)  # from architecture.json
    val_means = reference_run["val"]["val"]
    for key in ("T_psnr", "T_ssim", "R_psnr", "R_ssim", "I_psnr"):
        assert summary["means"][key] == pytest.approx(val_means[key], abs=1e-6), key


def test_interrupted_run_resumes_exactly(setup, reference_run, monkeypatch):
    base, photos, _ = setup
    args = train_args(photos, base / "ck", "resumed", "--n_iters", str(N_ITERS))
    original = RAWRRTrainer.optimize_parameters

    def interrupt_half_way(self, iteration):
        out = original(self, iteration)
        if iteration == N_ITERS // 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: stop after this iteration, save 'latest'
        return out

    monkeypatch.setattr(RAWRRTrainer, "optimize_parameters", interrupt_half_way)
    with pytest.raises(SystemExit) as stopped:
        train_script.main(args)
    assert stopped.value.code == train_script.INTERRUPTED_EXIT_CODE
    exp = base / "ck" / "resumed"
    state = torch.load(exp / "latest_train_state.pth", weights_only=True)
    assert state["progress"]["iteration"] == N_ITERS // 2 and state["progress"]["epoch_step"] == N_ITERS // 2
    assert not (exp / "final_net_G_T.pth").exists()
    monkeypatch.setattr(RAWRRTrainer, "optimize_parameters", original)

    # resume without --ngf/--num_cab: architecture.json gives them
    args = without(args, "--ngf", "--num_cab") + ["--continue_train"]
    result = train_script.main(args)
    assert result["iteration"] == N_ITERS
    ref = base / "ck" / "ref"
    for kind in ("net_G_T", "net_D"):
        mine, reference = (load_state_dict_file(d / f"final_{kind}.pth") for d in (exp, ref))
        assert_same_tensors(mine, reference)
    a = torch.load(exp / "final_train_state.pth", weights_only=True)
    b = torch.load(ref / "final_train_state.pth", weights_only=True)
    for key in ("optimizer_G", "optimizer_D"):
        for pid, s in a[key]["state"].items():
            assert_same_tensors(s, b[key]["state"][pid])
    assert a["progress"] == b["progress"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_atomic_save_keeps_the_previous_checkpoint(setup, tmp_path, monkeypatch):
    _, photos, _ = setup
    trainer, batch = make_trainer(photos, tmp_path)
    progress = {"iteration": 0, "epoch": 1, "epoch_step": 0}
    paths = trainer.save("latest", progress)
    before = {k: file_sha(p) for k, p in paths.items()}
    trainer.set_input(batch)
    trainer.optimize_parameters(1)
    real_save = torch.save

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial bytes of a checkpoint")  # some bytes reach the file, then the disk fails
        raise OSError("No space left on device")

    for name in ("net_G_T", "net_D", "train_state"):  # a failure in each of the three writes
        calls = {"n": 0}
        target = ("net_G_T", "net_D", "train_state").index(name)

        def failing(obj, f, *args, _target=target, _calls=calls, **kwargs):
            _calls["n"] += 1
            if _calls["n"] == _target + 1:
                return torn_save(obj, f)
            return real_save(obj, f, *args, **kwargs)

        monkeypatch.setattr(torch, "save", failing)
        with pytest.raises(UserError, match=r"cannot write checkpoint .*latest_\w+\.pth: No space.* unchanged"):
            trainer.save("latest", {"iteration": 1, "epoch": 1, "epoch_step": 1})
        monkeypatch.setattr(torch, "save", real_save)
        assert file_sha(paths[name]) == before[name]  # the file being written is the previous one, intact
        assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    # the training state still loads (it is self-contained) and holds iteration 0
    fresh, _ = make_trainer(photos, tmp_path)
    assert fresh.load("latest")["iteration"] == 0
    assert load_state_dict_file(paths["net_G_T"]).keys() == trainer.netG.state_dict().keys()


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(setup, tmp_path, monkeypatch, capsys):
    _, photos, _ = setup
    original = RAWRRTrainer.compute_losses
    calls = {"n": 0}

    def diverge_at_three(self):
        loss_G, loss_D, terms = original(self)
        calls["n"] += 1
        if calls["n"] == 3:
            terms["G_MSE_T"] = torch.tensor(float("nan"))
            loss_G = loss_G * float("nan")
        return loss_G, loss_D, terms

    monkeypatch.setattr(RAWRRTrainer, "compute_losses", diverge_at_three)
    args = train_args(photos, tmp_path, "nan", "--n_iters", "6", "--save_latest_freq", "2")
    exp = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at iteration 3 \(G_MSE_T=nan") as err:
        train_script.main(args)
    assert isinstance(err.value, UserError)
    state = torch.load(exp / "latest_train_state.pth", weights_only=True)
    assert state["progress"]["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in load_state_dict_file(exp / "latest_net_G_T.pth").values())
    assert not (exp / "final_net_G_T.pth").exists()
    # resumed, diverging at once, through the command-line wrapper: one line on stderr, status 2, files untouched
    calls["n"] = 2
    shas = {p.name: file_sha(p) for p in exp.glob("*.pth")}
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        train_script.run_cli(train_script.main, args + ["--continue_train"])
    assert stopped.value.code == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1 and "non-finite loss at iteration 3" in err_lines[0]
    assert {p.name: file_sha(p) for p in exp.glob("*.pth")} == shas


def test_resume_errors(setup, reference_run, tmp_path):
    base, photos, _ = setup
    with pytest.raises(UserError, match="nothing to resume.*latest_train_state.pth does not exist"):
        train_script.main(train_args(photos, tmp_path, "empty", "--continue_train"))
    opt_file = base / "ck" / "ref" / "train_opt.txt"
    before = opt_file.read_text()
    args = without(train_args(photos, base / "ck", "ref", "--continue_train"), "--ngf", "--num_cab")
    with pytest.raises(UserError, match=r"cannot resume .* --ngf 8 --num_cab 1 .* this run builds --ngf 16"):
        train_script.main(args + ["--ngf", "16"])
    assert opt_file.read_text() == before  # a refused resume leaves the run's options alone
    g = base / "ck" / "ref" / "final_net_G_T.pth"
    with pytest.raises(UserError, match=r"generator with --ngf 8 --num_cab 1, but the network was built with --ngf 16"):
        train_script.main(without(train_args(photos, tmp_path, "ft", "--init_from", str(g)), "--ngf") + ["--ngf", "16"])
