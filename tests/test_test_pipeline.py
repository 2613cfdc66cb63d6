"""test.py end to end on a tiny generated dataset (ngf 8), its outputs, options and one-line errors."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import test as test_script
from options.test_options import TestOptions
from tests.tiny_data import make_test_set, save_random_generator
from util.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    data = make_test_set(base / "data", n=2, h=64, w=96)
    save_random_generator(base / "ck" / "tiny" / "final_net_G_T.pth", ngf=8, num_cab=2)
    return base, data


def common(base, data, *extra):
    return ["--dataroot", str(data), "--name", "tiny", "--checkpoints_dir", str(base / "ck"),
            "--results_dir", str(base / "res"), "--gpu_ids", "-1", *extra]


def test_test_py_writes_every_output(tiny):
    base, data = tiny
    summary = test_script.main(common(base, data, "--eval_resize", "none", "--model", "rawrr"))
    out = base / "res" / "tiny" / "test_final"
    stems = ["img00", "img01"]
    for stem in stems:
        for kind in ("I", "T", "R", "T_gt", "R_gt"):
            img = np.asarray(Image.open(out / "images" / f"{stem}_{kind}.png"))
            assert img.shape == (64, 96, 3) and img.dtype == np.uint8
    # the saved input is exactly the input's RGB file (native geometry)
    src = np.asarray(Image.open(data / "testB_rgb" / "img00.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "images" / "img00_I.png")), src)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["stem"] for r in rows] == stems
    for r in rows:
        for col in ("T_psnr", "T_ssim", "T_lpips", "R_psnr", "R_ssim", "R_lpips", "I_psnr", "I_ssim", "I_lpips"):
            assert np.isfinite(float(r[col])), col
        assert float(r["seconds"]) > 0
    # metrics are those of the saved 8-bit files
    from util.metrics import psnr

    t = np.asarray(Image.open(out / "images" / "img01_T.png"))
    gt = np.asarray(Image.open(out / "images" / "img01_T_gt.png"))
    assert float(rows[1]["T_psnr"]) == pytest.approx(psnr(gt, t), abs=1e-5)
    meta = json.loads((out / "metrics.json").read_text())
    assert meta["num_images"] == 2 and meta["ngf"] == 8 and meta["num_cab"] == 2
    assert meta["means"]["T_psnr"] == pytest.approx(np.mean([float(r["T_psnr"]) for r in rows]))
    assert "data_range=255" in meta["metric_convention"]["psnr"] and meta["versions"]["torch"]
    assert meta["checkpoint"].endswith("final_net_G_T.pth") and summary["precision"] in ("fp32", "bf16")
    html = (out / "index.html").read_text()
    assert all(f"images/{s}_{k}.png" in html for s in stems for k in ("I", "T", "R", "T_gt", "R_gt"))
    opt_txt = (base / "ck" / "tiny" / "test_opt.txt").read_text()
    assert "ngf: 8" in opt_txt and "eval_resize: none" in opt_txt


def test_official_geometry_and_no_gt_layout(tiny, tmp_path):
    base, _ = tiny
    data = make_test_set(tmp_path / "wogt", n=1, h=96, w=128, with_gt=False, layout="wogtB")
    test_script.main(common(base, data, "--results_dir", str(tmp_path / "res"), "--no_lpips"))
    out = tmp_path / "res" / "tiny" / "test_final"
    assert np.asarray(Image.open(out / "images" / "img00_T.png")).shape == (448, 640, 3)
    assert not (out / "images" / "img00_T_gt.png").exists()
    row = next(csv.DictReader(open(out / "metrics.csv")))
    assert row["T_psnr"] == "" and float(row["seconds"]) > 0


def test_options_resolve_names_devices_and_architecture(tiny):
    base, data = tiny
    opt = TestOptions().parse(common(base, data, "--model", "RaWrR", "--dataset_mode", "RAWRR"), save=False)
    assert str(opt.device) == "cpu" and opt.gpu_ids == []
    assert (opt.ngf, opt.num_cab) == (8, 2)  # read from the checkpoint, not the defaults
    with pytest.raises(UserError, match="unknown --model 'nope'; choose one of: rawrr"):
        TestOptions().parse(common(base, data, "--model", "nope"), save=False)
    with pytest.raises(UserError, match="unknown --dataset_mode"):
        TestOptions().parse(common(base, data, "--dataset_mode", "x"), save=False)
    with pytest.raises(UserError, match="--gpu_ids"):
        TestOptions().parse(common(base, data, "--gpu_ids", "a"), save=False)


def run_cli(args):
    return subprocess.run([sys.executable, "test.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_errors_are_one_line(tiny, tmp_path):
    base, data = tiny
    (tmp_path / "empty").mkdir()
    cases = [
        (common(base, tmp_path / "empty"), "testB_rgb"),
        (common(base, data, "--ngf", "16"), "--ngf 8 --num_cab 2"),
        (common(base, data, "--name", "absent"), "no weights at"),
    ]
    for args, needle in cases:
        proc = run_cli(args)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and needle in last, proc.stderr
