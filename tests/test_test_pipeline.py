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
from util.errors import run_cli as run_main_cli

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
    # the tone split of the same files, as scripts/tone_check.py computes it
    from scripts.tone_check import check_folder

    split = check_folder(out)["images"]["img01"]
    assert float(rows[1]["tone_psnr"]) == pytest.approx(split["tone_only"], abs=1e-5)
    assert float(rows[1]["separation_psnr"]) == pytest.approx(split["separation"], abs=1e-5)
    assert float(rows[1]["beyond_curve_psnr"]) == pytest.approx(split["beyond_curve"], abs=1e-5)
    assert float(rows[1]["curve_fidelity_psnr"]) == pytest.approx(split["curve_fidelity"], abs=1e-5)
    meta = json.loads((out / "metrics.json").read_text())
    assert meta["means"]["separation_psnr"] == pytest.approx(
        np.mean([float(r["separation_psnr"]) for r in rows]), abs=1e-5)
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


def test_second_run_never_replaces_the_first(tiny, tmp_path):
    base, data = tiny
    args = common(base, data, "--results_dir", str(tmp_path / "res"), "--eval_resize", "none", "--no_lpips",
                  "--num_test", "1")
    first = test_script.main(args)
    out = tmp_path / "res" / "tiny" / "test_final"
    assert first["results"] == str(out) and first["complete"] is True
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    second = test_script.main([*args, "--num_test", "2"])
    assert second["results"] == str(out) + "_2" and second["num_images"] == 2
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # untouched, nothing added
    assert (out.parent / "test_final_2" / "images" / "img01_T.png").is_file()
    assert test_script.main(args)["results"] == str(out) + "_3"


def test_a_bad_image_keeps_the_metrics_of_those_before_it(tiny, tmp_path):
    base, _ = tiny
    data = make_test_set(tmp_path / "data", n=2, h=64, w=96)
    broken = data / "testB_rgb" / "img01.png"
    broken.write_bytes(broken.read_bytes()[:150])  # truncated
    args = common(base, data, "--results_dir", str(tmp_path / "res"), "--eval_resize", "none", "--no_lpips")
    with pytest.raises(UserError, match=r"cannot read image .*img01\.png"):
        test_script.main(args)
    out = tmp_path / "res" / "tiny" / "test_final"
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["stem"] for r in rows] == ["img00"] and float(rows[0]["T_psnr"]) > 0
    meta = json.loads((out / "metrics.json").read_text())
    assert meta["complete"] is False and meta["num_images"] == 1
    assert "stopped after 1 of 2 image(s)" in meta["error"] and "img01.png" in meta["error"]
    assert "INCOMPLETE" in (out / "index.html").read_text()


def test_worker_errors_stay_one_line(tiny, tmp_path, capsys):
    base, _ = tiny
    data = make_test_set(tmp_path / "data", n=1, h=64, w=96)
    (data / "testB_rgb" / "img00.png").write_bytes(b"")  # a zero-byte PNG, read in a DataLoader worker
    args = common(base, data, "--results_dir", str(tmp_path / "res"), "--num_threads", "1", "--no_lpips")
    with pytest.raises(SystemExit) as info:
        run_main_cli(test_script.main, args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: cannot read image ") and "img00.png: the file is empty" in err[-1]
    assert not any("Traceback" in line for line in err), err


@pytest.mark.parametrize("flags, needle", [
    (["--num_test", "-1"], "--num_test -1 is negative"),
    (["--num_threads", "-2"], "--num_threads -2 is negative"),
    (["--tile", "100"], "--tile 100 must be 0 (whole image) or a positive multiple of 8, e.g. 96"),
    (["--tile", "-8"], "--tile -8 must be 0"),
    (["--tile", "64", "--tile_overlap", "48"], "--tile_overlap 48 is more than half of --tile 64; use at most 32"),
    (["--tile_overlap", "7"], "--tile_overlap 7 must be an even number"),
    (["--ngf", "2"], "--ngf 2 is too narrow"),
    (["--num_cab", "-1"], "--num_cab -1 is negative"),
    (["--init_gain", "nan"], "--init_gain nan must be a positive number"),
    (["--epoch", "../final"], "--epoch '../final' must be a plain label"),
    (["--suffix", "{nope}"], "--suffix '{nope}': unknown field {nope}"),
    (["--suffix", "ngf{ngf}"], "uses {ngf}, which is unknown before the experiment folder is chosen; pass --ngf"),
    (["--suffix", "{netG"], "--suffix '{netG'"),
])
def test_nonsense_flags_are_refused_at_parse_time(tiny, flags, needle):
    base, data = tiny
    with pytest.raises(UserError) as info:
        TestOptions().parse(common(base, data, *flags), save=False)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_suffix_and_tile_overlap_defaults(tiny):
    base, data = tiny
    opt = TestOptions().parse(common(base, data, "--suffix", "{netG}_ngf{ngf}", "--ngf", "8", "--num_cab", "2",
                                     "--tile", "64"), save=False)
    assert opt.name == "tiny_gen_drop_ngf8" and opt.tile_overlap == 32  # default 64, capped at half the tile
    assert TestOptions().parse(common(base, data), save=False).tile_overlap == 64


def test_full_disk_is_one_line_naming_the_file(tiny, tmp_path, monkeypatch, capsys):
    import errno

    from PIL import Image

    base, data = tiny
    real_save = Image.Image.save

    def full_disk(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)  # the bytes went out, then the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(SystemExit) as info:
        run_main_cli(test_script.main, common(base, data, "--results_dir", str(tmp_path / "res"), "--no_lpips"))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write ") and "img00_I.png: No space left" in err[0]
    images = tmp_path / "res" / "tiny" / "test_final" / "images"
    assert list(images.iterdir()) == []  # no torn file, no temporary file left behind


def test_more_hostile_inputs_are_one_line(tiny, tmp_path):
    import torch

    from models.cr3net import CR3Net

    base, _ = tiny
    mismatch = make_test_set(tmp_path / "mismatch", n=1, h=64, w=96)
    rgb = np.asarray(Image.open(mismatch / "testB_rgb" / "img00.png"))
    Image.fromarray(np.pad(rgb, ((0, 0), (0, 1), (0, 0)), mode="edge")).save(mismatch / "testB_rgb" / "img00.png")
    sd = CR3Net(ngf=8, num_cab=2).state_dict()
    next(v for v in sd.values() if v.is_floating_point()).view(-1)[0] = float("nan")
    (tmp_path / "ck" / "nan").mkdir(parents=True)
    torch.save(sd, tmp_path / "ck" / "nan" / "final_net_G_T.pth")
    results = ["--results_dir", str(tmp_path / "res")]
    cases = [
        (common(base, mismatch, *results, "--eval_resize", "none"), "97x64 but its RAW"),  # 1 px off
        ([*common(base, tiny[1], *results), "--checkpoints_dir", str(tmp_path / "ck"), "--name", "nan"],
         "holds NaN or infinite weights"),
        (common(base, tiny[1], *results, "--tile", "100"), "--tile 100"),
    ]
    for args, needle in cases:
        proc = run_cli(args)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and needle in last, proc.stderr


def test_compile_flag_runs_inference_through_torch_compile(tiny, tmp_path, monkeypatch):
    """--compile hands the generator to torch.compile once and runs inference through what it returns."""
    import torch

    base, data = tiny
    plain = test_script.main(common(base, data, "--eval_resize", "none", "--results_dir", str(tmp_path / "a")))
    calls = []

    def fake_compile(module, *args, **kwargs):  # stands in for the compiler: records the call, runs the module
        calls.append(module)

        def forward(*inputs):
            calls.append("forward")
            return module(*inputs)

        return forward

    monkeypatch.setattr(torch, "compile", fake_compile)
    compiled = test_script.main(common(base, data, "--eval_resize", "none", "--compile",
                                       "--results_dir", str(tmp_path / "b")))
    assert isinstance(calls[0], torch.nn.Module) and calls.count("forward") == 2  # one compile, one call per image
    assert compiled["means"]["T_psnr"] == pytest.approx(plain["means"]["T_psnr"], abs=1e-6)
