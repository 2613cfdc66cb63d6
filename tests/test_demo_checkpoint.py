"""The committed demo checkpoint: `bash test.sh`'s embedded default keeps the promise the README makes for it.

It is rebuilt from its folder alone (train_opt.txt gives the width) and evaluated exactly as test.sh does, on the
demo test set generated afresh (deterministic, from the photographs inside scikit-image): it must beat the
do-nothing baseline (input vs ground-truth T) by at least 2 dB PSNR, and improve SSIM and LPIPS as well.
"""

import importlib.util
import shutil
from pathlib import Path

import pytest

import test as test_script
from models.checkpoint import infer_generator_shape, load_state_dict_file

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "demo"
MAX_BYTES = 10 * 1024 * 1024  # the limit for a committed checkpoint
_spec = importlib.util.spec_from_file_location("make_demo_dataset", ROOT / "scripts" / "make_demo_dataset.py")
make_demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_demo)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    if not (DEMO / "final_net_G_T.pth").is_file():
        pytest.fail(f"{DEMO / 'final_net_G_T.pth'} is missing: the demo checkpoint is part of the repository")
    base = tmp_path_factory.mktemp("demo_ckpt")
    data = base / "demo"
    make_demo.main(["--out", str(data)])  # test.sh's defaults
    ck = base / "ck" / "demo"
    ck.mkdir(parents=True)
    for name in ("final_net_G_T.pth", "train_opt.txt"):  # a copy: test.py writes test_opt.txt beside them
        shutil.copy(DEMO / name, ck / name)
    summary = test_script.main(["--dataroot", str(data), "--name", "demo", "--checkpoints_dir", str(base / "ck"),
                                "--results_dir", str(base / "res"), "--epoch", "final", "--eval_resize", "official",
                                "--gpu_ids", "-1"])
    return summary


def test_demo_checkpoint_is_small_and_narrow():
    path = DEMO / "final_net_G_T.pth"
    assert path.stat().st_size <= MAX_BYTES
    state = load_state_dict_file(path)
    opt_txt = (DEMO / "train_opt.txt").read_text()
    ngf, num_cab = infer_generator_shape(state)
    assert f"ngf: {ngf} " in opt_txt and f"num_cab: {num_cab} " in opt_txt


def test_demo_checkpoint_beats_doing_nothing_by_2_db(demo_run):
    means = demo_run["means"]
    assert demo_run["num_images"] == 8 and demo_run["ngf"] == 16 and demo_run["num_cab"] == 2
    gain = means["T_psnr"] - means["I_psnr"]
    print(f"demo checkpoint: T {means['T_psnr']:.2f} dB vs do-nothing {means['I_psnr']:.2f} dB (+{gain:.2f} dB)")
    assert gain >= 2.0
    assert means["T_ssim"] > means["I_ssim"] and means["T_lpips"] < means["I_lpips"]
