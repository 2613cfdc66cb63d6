"""scripts/device_kit.py and scripts/device_train.sh: the GPU kit holds the training split only, its VGG file gives
the perceptual loss's features unchanged, and the device script trains on it and leaves the weights in $OUT."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from data.splits import is_held_out
from models.losses import RELU2_1_END
from scripts import device_kit
from util.backbones import VGG16_FILE, backbone_paths

ROOT = Path(__file__).resolve().parents[1]
HOLDOUT = 4


def _write(path: Path, size: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """A small stand-in for ../shared/data: 12 photos in two folders and formats, 8 real pairs."""
    root = tmp_path_factory.mktemp("shared")
    for i in range(12):
        _write(root / "photos" / ("a" if i % 2 else "b") / f"p{i:02d}.{'png' if i % 3 else 'jpg'}", (300, 200), i)
    for i in range(8):
        for side in ("blended", "transmission"):
            _write(root / "reflection" / "zhang_real" / side / f"{i:03d}.jpg", (400, 300), 100 + i)
    return root


@pytest.fixture(scope="module")
def kit(shared, tmp_path_factory) -> Path:
    if not backbone_paths()["vgg16"].is_file():
        pytest.skip("backbone weights not set up (python -m util.backbones)")
    out = tmp_path_factory.mktemp("kit") / "kit"
    device_kit.main(["--shared", str(shared), "--out", str(out), "--holdout_every", str(HOLDOUT),
                     "--photo_side", "160", "--pair_side", "128", "--no_wheels"])
    return out


def test_kit_holds_the_training_split_only_shrunk(shared, kit):
    photos = sorted(p.relative_to(shared / "photos").as_posix() for p in (shared / "photos").rglob("*.*"))
    kept = [name for name in photos if not is_held_out(name, HOLDOUT)]
    assert 0 < len(kept) < len(photos), "the fixture must have photos on both sides of the split"
    packed = sorted(p.relative_to(kit / "photos").as_posix() for p in (kit / "photos").rglob("*.jpg"))
    assert packed == sorted(str(Path(name).with_suffix(".jpg")) for name in kept)
    for path in (kit / "photos").rglob("*.jpg"):
        with Image.open(path) as image:
            assert max(image.size) == 160
    stems = [f"{i:03d}" for i in range(8) if not is_held_out(f"{i:03d}", HOLDOUT)]
    for side in ("blended", "transmission"):
        assert sorted(p.stem for p in (kit / "zhang_real" / side).iterdir()) == stems
        for path in (kit / "zhang_real" / side).iterdir():
            with Image.open(path) as image:
                assert image.size == (128, 96)


def test_kit_vgg_gives_the_perceptual_features_unchanged(kit, tmp_path):
    with tarfile.open(kit / "pretrained.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    packed = torch.load(tmp_path / VGG16_FILE, map_location="cpu", weights_only=True)
    full = torch.load(backbone_paths()["vgg16"], map_location="cpu", weights_only=True)
    nets = []
    for state in (packed, full):
        net = torchvision.models.vgg16().features.eval()
        net.load_state_dict(state, strict=True)
        nets.append(net)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(nets[0][:RELU2_1_END](x), nets[1][:RELU2_1_END](x))
    later = [k for k in packed if int(k.split(".")[0]) >= RELU2_1_END]
    assert later and all(not packed[k].any() for k in later)
    assert (tmp_path / "alexnet_features.pth").is_file()


def test_kit_refuses_a_missing_shared_folder(tmp_path):
    with pytest.raises(device_kit.UserError, match="not found: pass --shared"):
        device_kit.main(["--shared", str(tmp_path), "--out", str(tmp_path / "kit"), "--no_wheels"])


def test_device_script_trains_on_the_kit_and_returns_the_weights(kit, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OUT=str(out), KIT=str(kit), MINUTES="5", PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["bash", "scripts/device_train.sh", "--gpu_ids", "-1", "--ngf", "8", "--num_cab", "1", "--crop_size", "64",
         "--batch_size", "2", "--n_iters", "2", "--num_threads", "0", "--precision", "fp32", "--lambda_vgg", "0.1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("latest_net_G_T.pth", "train_opt.txt", "loss_log.txt", "train.log", "throughput.txt"):
        assert (out / name).is_file(), name
    assert "2 iterations, 4 samples" in (out / "throughput.txt").read_text()
    state = torch.load(out / "latest_net_G_T.pth", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
