"""The RAW-vs-RGB study: --raw_source twins that differ only in the RAW input, the condition sets, and the one command
(scripts/raw_vs_rgb.py) end to end at a tiny budget, then rerun (nothing to do) and resumed."""

import csv
import dataclasses
import json
import math
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

import test as test_script
from data.cameras import DEFAULT_PROFILE
from data.condition_sets import CONDITIONS, condition_config, make_condition_sets
from data.image_io import read_raw_mosaic
from data.pseudo_raw import pseudo_packed_raw
from data.rawrr_dataset import RawrrDataset
from data.rawrr_train_dataset import RawrrTrainDataset
from data.splits import is_held_out
from data.synthesis import PhysicalConfig, params_to_json, synthesize_physical
from options.base_options import read_saved_options
from options.test_options import TestOptions
from options.train_options import TrainOptions
from scripts import make_condition_sets as condition_cli
from scripts import raw_vs_rgb as study
from tests.test_train_dataset import make_photos, make_real, opt_for
from tests.test_training import write_photos
from tests.tiny_data import make_test_set, save_random_generator, smooth_image
from util.errors import UserError
from util.image_io import read_rgb, write_rgb

HELD_OUT = {"photo1.png", "photo2.png", "photo4.png", "photo5.png"}  # of photo0..5 under --holdout_every 2
LEVELS = DEFAULT_PROFILE.white - DEFAULT_PROFILE.black


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: fast on a loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def saved_option(key, value):
    """One line of a train_opt.txt as options.base_options.format_options writes it."""
    return f"{key:>25}: {value!s:<30}\t[default: None]\n"


# ------------------------------------------------------------------------------------------ the twins
def test_twins_differ_only_in_the_raw_input(tmp_path):
    make_photos(tmp_path / "photos")
    make_real(tmp_path / "photos", size=(24, 24))  # real triplets with a GBRG sensor RAW beside the photos
    sensor, rgb = (RawrrTrainDataset(opt_for(tmp_path / "photos", real_ratio=0.5, samples_per_epoch=16, raw_source=s))
                   for s in ("sensor", "rgb"))
    kinds = set()
    for index in range(16):
        a, b = sensor[index], rgb[index]
        assert a.keys() == b.keys()
        kinds.add(bool(a["is_real"]))
        for key, value in a.items():
            if key.endswith("_raw"):  # the RAW of the rgb twin is the fixed inverse ISP of its own RGB ...
                assert torch.equal(b[key], pseudo_packed_raw(b[key.replace("_raw", "_rgb")])), key
                assert not torch.equal(value, b[key]), key
            elif isinstance(value, torch.Tensor):  # ... and everything else is the sensor twin's, bit for bit
                assert torch.equal(value, b[key]), key
            else:
                assert value == b[key], key
    assert kinds == {True, False}
    with pytest.raises(UserError, match="--raw_source 'camera'"):
        RawrrTrainDataset(opt_for(tmp_path / "photos", raw_source="camera"))


def test_test_sets_and_test_py_feed_the_pseudo_raw_with_raw_source_rgb(tmp_path, monkeypatch):
    import models.rawrr_model as rawrr_model

    data = make_test_set(tmp_path / "data", n=1, h=64, w=96)
    for resize, shape in (("none", (4, 32, 48)), ("official", (4, 192, 320))):
        opt = dict(dataroot=str(data), phase="test", eval_resize=resize, num_test=0)
        own, made = RawrrDataset(Namespace(**opt))[0], RawrrDataset(Namespace(**opt, raw_source="rgb"))[0]
        assert made["I_raw"].shape == shape and made["camera"] == "default"
        for role in ("I", "T", "R"):
            assert torch.equal(made[f"{role}_rgb"], own[f"{role}_rgb"])
            assert torch.equal(made[f"{role}_raw"], pseudo_packed_raw(made[f"{role}_rgb"]))  # at the network's size
            assert not torch.equal(made[f"{role}_raw"], own[f"{role}_raw"])
    with pytest.raises(UserError, match="--raw_source"):
        RawrrDataset(Namespace(dataroot=str(data), phase="test", eval_resize="none", raw_source="x"))

    save_random_generator(tmp_path / "ck" / "twin" / "final_net_G_T.pth", ngf=8, num_cab=1)
    seen = []
    original = rawrr_model.separate_tiled

    def spy(net, I_rgb, I_raw, *args, **kwargs):
        seen.append((I_rgb.detach().cpu().clone(), I_raw.detach().cpu().clone()))
        return original(net, I_rgb, I_raw, *args, **kwargs)

    monkeypatch.setattr(rawrr_model, "separate_tiled", spy)
    args = ["--dataroot", str(data), "--name", "twin", "--checkpoints_dir", str(tmp_path / "ck"), "--results_dir",
            str(tmp_path / "res"), "--gpu_ids", "-1", "--eval_resize", "none", "--no_lpips", "--precision", "fp32"]
    sensor_raw = RawrrDataset(Namespace(dataroot=str(data), phase="test", eval_resize="none"))[0]["I_raw"]

    summary = test_script.main(args + ["--raw_source", "rgb"])
    assert summary["raw_source"] == "rgb"
    assert torch.equal(seen[-1][1][0], pseudo_packed_raw(seen[-1][0][0]))
    assert test_script.main(args)["raw_source"] == "sensor"  # no flag, no train_opt.txt: the data's RAW
    assert torch.equal(seen[-1][1][0], sensor_raw)
    # no flag: the checkpoint folder's train_opt.txt says how the network was trained, as for --ngf
    (tmp_path / "ck" / "twin" / "train_opt.txt").write_text(saved_option("raw_source", "rgb"))
    assert TestOptions().parse(args, save=False).raw_source == "rgb"
    assert TestOptions().parse(args + ["--raw_source", "sensor"], save=False).raw_source == "sensor"
    assert test_script.main(args)["raw_source"] == "rgb"
    assert torch.equal(seen[-1][1][0], pseudo_packed_raw(seen[-1][0][0]))


def test_raw_source_stays_with_a_training_run(tmp_path):
    exp = tmp_path / "ck" / "twin"
    exp.mkdir(parents=True)
    (exp / "train_opt.txt").write_text(saved_option("raw_source", "rgb"))
    base = ["--dataroot", str(tmp_path), "--name", "twin", "--checkpoints_dir", str(tmp_path / "ck"),
            "--gpu_ids", "-1"]
    assert TrainOptions().parse(base, save=False).raw_source == "sensor"  # a new run: the default, not the folder's
    assert TrainOptions().parse(base + ["--raw_source", "rgb"], save=False).raw_source == "rgb"
    assert TrainOptions().parse(base + ["--continue_train"], save=False).raw_source == "rgb"  # resumed as trained
    with pytest.raises(UserError, match="cannot resume .* with --raw_source sensor: it was trained with --raw_source "
                       "rgb"):
        TrainOptions().parse(base + ["--continue_train", "--raw_source", "sensor"], save=False)


# ------------------------------------------------------------------------------------------ the condition sets
def test_exposure_scales_the_light_and_its_default_draws_nothing():
    rng = np.random.default_rng(0)
    T, R = smooth_image(rng, 32, 32), smooth_image(rng, 32, 32)
    base = synthesize_physical(T, R, np.random.default_rng(3))
    assert base["params"]["exposure"] == 1.0
    same = synthesize_physical(T, R, np.random.default_rng(3), config=PhysicalConfig(exposure=(1.0, 1.0)))
    for key in ("I_rgb", "T_rgb", "R_rgb", "I_raw", "T_raw", "R_raw"):
        assert torch.equal(base[key], same[key]), key
    # a fixed exposure draws nothing either: the same camera and draws, 1.5 x the light (up to rounding, white)
    bright = synthesize_physical(T, R, np.random.default_rng(3), config=PhysicalConfig(exposure=(1.5, 1.5)))
    assert bright["params"]["exposure"] == 1.5
    assert params_to_json(bright["params"])["isp"] == params_to_json(base["params"])["isp"]
    assert bright["params"]["reflection_gain"] == base["params"]["reflection_gain"]
    for key in ("T_raw", "R_raw"):
        expected = (1.5 * base[key]).clamp(max=1)
        assert float((bright[key] - expected).abs().max()) <= 1.3 / LEVELS, key
    drawn = synthesize_physical(T, R, np.random.default_rng(3), config=PhysicalConfig(exposure=(0.5, 2.0)))
    assert 0.5 <= drawn["params"]["exposure"] <= 2.0 and drawn["params"]["exposure"] != 1.0


def clip_counts(folder: Path, stems) -> tuple[int, int]:
    """(2x2 sites of the input whose RGB has a channel at 255, those of them whose RAW is below white everywhere)."""
    clipped = headroom = 0
    for stem in stems:
        rgb = read_rgb(folder / "testB_rgb" / f"{stem}.png")
        mosaic = read_raw_mosaic(folder / "testB_raw" / f"{stem}.png")
        h, w = mosaic.shape
        rgb_clipped = (rgb == 255).any(axis=2).reshape(h // 2, 2, w // 2, 2).any(axis=(1, 3))
        raw_white = (mosaic >= DEFAULT_PROFILE.white).reshape(h // 2, 2, w // 2, 2).any(axis=(1, 3))
        clipped += int(rgb_clipped.sum())
        headroom += int((rgb_clipped & ~raw_white).sum())
    return clipped, headroom


def test_condition_sets_are_deterministic_and_highlights_clip_the_rgb_not_the_raw(tmp_path, capsys):
    photos = write_photos(tmp_path / "photos", n=6)
    assert {p.name for p in photos.iterdir() if is_held_out(p.name, 2)} == HELD_OUT
    kwargs = dict(photos=photos, holdout_every=2, num=4, size=(32, 48), seed=0)
    made = make_condition_sets(tmp_path / "sets", **kwargs)
    assert list(made) == list(CONDITIONS)
    manifests = {name: json.loads((folder / "manifest.json").read_text()) for name, folder in made.items()}
    stems = [item["stem"] for item in manifests["normal"]["items"]]
    scenes = [(item["T_source"], item["R_source"]) for item in manifests["normal"]["items"]]
    assert {name for pair in scenes for name in pair} <= HELD_OUT and all(t != r for t, r in scenes)
    for name, manifest in manifests.items():
        assert [(item["T_source"], item["R_source"]) for item in manifest["items"]] == scenes  # the same scenes
        config = json.loads(json.dumps(dataclasses.asdict(condition_config(name))))
        assert manifest["request"]["physical_config"] == config
        ds = RawrrDataset(Namespace(dataroot=str(made[name]), phase="test", eval_resize="none", num_test=0))
        assert len(ds) == 4 and set(ds.roles) == {"I", "T", "R"} and ds[0]["I_raw"].shape == (4, 16, 24)
    params = {name: [item["params"] for item in m["items"]] for name, m in manifests.items()}
    eps = 1e-9
    assert all(p["exposure"] == 1.0 for p in params["normal"] + params["strong_reflection"])
    assert all(1.4 - eps <= p["exposure"] <= 2.0 + eps for p in params["highlights"])
    assert all(0.3 - eps <= p["exposure"] <= 0.6 + eps and 1e-3 - eps <= p["shot_noise"] <= 1.2e-2 + eps
               for p in params["low_light"])
    assert all(0.45 <= p["reflection_gain"] <= 0.6 for p in params["strong_reflection"])
    assert all(0.15 <= p["reflection_gain"] <= 0.25 for p in params["weak_reflection"])
    for name in CONDITIONS:  # shared draws: the same camera and glass for item i in every condition
        for i, p in enumerate(params[name]):
            assert p["isp"] == params["normal"][i]["isp"] and p["transmittance"] == params["normal"][i]["transmittance"]

    # highlights: a brighter exposure clips the RGB, mostly where the RAW is still below white
    clipped, headroom = clip_counts(made["highlights"], stems)
    clipped_normal, _ = clip_counts(made["normal"], stems)
    assert clipped > 2 * clipped_normal + 10
    assert headroom >= 0.5 * clipped
    fractions = {name: np.mean([item["rgb_clipped_fraction"] for item in m["items"]]) for name, m in manifests.items()}
    assert fractions["highlights"] > fractions["normal"]

    # deterministic and idempotent, through the command too
    before = {p.relative_to(tmp_path / "sets"): p.read_bytes() for p in (tmp_path / "sets").rglob("*") if p.is_file()}
    capsys.readouterr()
    make_condition_sets(tmp_path / "sets", **kwargs)
    assert capsys.readouterr().out.count("is up to date") == len(CONDITIONS)
    cli = condition_cli.main(["--out", str(tmp_path / "again"), "--photos", str(photos), "--holdout_every", "2",
                              "--num", "4", "--size", "32x48", "--conditions", "highlights", "normal"])
    assert set(cli) == {"highlights", "normal"}
    for rel, data in before.items():
        if rel.parts[0] in cli:
            assert (tmp_path / "again" / rel).read_bytes() == data, rel

    with pytest.raises(UserError, match="0 held-out photo"):
        make_condition_sets(tmp_path / "none", photos, holdout_every=1000, num=1, size=(32, 48))
    (tmp_path / "foreign" / "normal").mkdir(parents=True)
    (tmp_path / "foreign" / "normal" / "mine.txt").write_text("x")
    with pytest.raises(UserError, match="did not make"):
        make_condition_sets(tmp_path / "foreign", **{**kwargs, "conditions": ["normal"]})
    with pytest.raises(UserError, match="HxW"):
        condition_cli.main(["--photos", str(photos), "--size", "32"])


# ------------------------------------------------------------------------------------------ the one command
def test_study_refuses_flags_that_define_the_twins(tmp_path):
    photos = write_photos(tmp_path / "photos", n=6)
    base = ["--out", str(tmp_path / "study"), "--dataroot", str(photos), "--holdout_every", "2", "--budget", "2"]
    for flag in (["--seed", "3"], ["--raw_source=rgb"], ["--continue_train"], ["--name", "x"]):
        with pytest.raises(UserError, match="is set by this script"):
            study.main(base + flag)
    with pytest.raises(UserError, match="--seeds"):
        study.main(base + ["--seeds", "1", "1"])
    with pytest.raises(UserError, match="held-out photo"):
        study.main(base[:-4] + ["--holdout_every", "1000", "--budget", "2"])
    assert not (tmp_path / "study").exists()  # refused before anything was written


def test_one_command_trains_both_twins_evaluates_and_resumes(tmp_path, monkeypatch):
    photos = write_photos(tmp_path / "photos", n=6)  # photo0 and photo3 train, the other four make the sets
    real = make_test_set(tmp_path / "real_heldout", n=1, h=48, w=64)
    out = tmp_path / "study"
    argv = ["--out", str(out), "--dataroot", str(photos), "--holdout_every", "2", "--budget", "2", "--seeds", "0",
            "--ngf", "8", "--num_cab", "1", "--crop_size", "32", "--batch_size", "2", "--num_condition", "2",
            "--condition_size", "48x64", "--real_sets", str(real), "--real_eval_resize", "none",
            "--gpu_ids", "-1", "--precision", "fp32",
            "--vgg", "vgg16", "--num_threads", "0", "--samples_per_epoch", "4"]  # the last three go to train.py
    result = study.main(argv)

    sets = [s["name"] for s in result["sets"]]
    assert sets == [*CONDITIONS, "real_heldout"]
    for twin in ("sensor", "rgb"):
        exp = out / "runs" / f"{twin}_s0"
        saved = read_saved_options(exp / "train_opt.txt")
        assert (saved["raw_source"], saved["seed"], saved["n_iters"], saved["ngf"]) == (twin, "0", "2", "8")
        assert (exp / "final_net_G_T.pth").is_file()
        for name in sets:
            summary = json.loads((out / "eval" / name / f"{twin}_s0" / "summary.json").read_text())
            assert summary["request"]["raw_source"] == twin and (Path(summary["results"]) / "metrics.csv").is_file()
    per_run = list(csv.DictReader(open(out / "results_per_run.csv")))
    assert len(per_run) == 2 * len(sets)
    for name in sets:  # the same inputs for both twins: the do-nothing scores agree
        a, b = (r for r in per_run if r["set"] == name)
        assert {a["twin"], b["twin"]} == {"sensor", "rgb"} and a["I_psnr"] == b["I_psnr"] and a["images"] == b["images"]
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["set"], r["metric"]) for r in rows] == [(s, m) for s in sets for m in ("psnr", "ssim", "lpips")]
    for r in rows:
        assert r["seeds"] == "1" and r["sensor_std"] == "nan"  # one seed: no spread yet
        assert math.isfinite(float(r["sensor_mean"])) and math.isfinite(float(r["rgb_mean"]))
        assert float(r["diff_mean"]) == pytest.approx(float(r["sensor_mean"]) - float(r["rgb_mean"]), abs=1e-5)
    md = (out / "results.md").read_text()
    assert "| highlights | 2 |" in md and "Δ sensor − rgb" in md and "## T LPIPS" in md and "real_heldout" in md
    assert (out / "raw_vs_rgb.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the same command again: nothing to train, nothing to evaluate, the same results
    results = {name: (out / name).read_bytes() for name in ("results.csv", "results_per_run.csv")}
    real_train_run = study.train_run

    def forbidden(*args, **kwargs):
        raise AssertionError("nothing should be trained or evaluated again")

    monkeypatch.setattr(study, "train_run", forbidden)
    monkeypatch.setattr(study, "run_test_py", forbidden)
    study.main(argv)
    assert {name: (out / name).read_bytes() for name in results} == results

    # a run stopped after its last 'latest' checkpoint resumes from it; its weights, hence its scores, are the same
    exp = out / "runs" / "rgb_s0"
    for kind in ("net_G_T", "net_D", "train_state"):
        (exp / f"final_{kind}.pth").unlink()
    commands = []

    def recording(cmd):
        commands.append(cmd)
        return real_train_run(cmd)

    monkeypatch.setattr(study, "train_run", recording)
    study.main(argv)
    assert len(commands) == 1 and "--continue_train" in commands[0]
    assert commands[0][commands[0].index("--raw_source") + 1] == "rgb" and (exp / "final_net_G_T.pth").is_file()
    assert {name: (out / name).read_bytes() for name in results} == results

    # another budget on the same folder is refused before any work
    with pytest.raises(UserError, match="other settings.*budget: 2 -> 3"):
        study.main([*argv[:argv.index("--budget")], "--budget", "3", *argv[argv.index("--budget") + 2:]])


def test_rgb_only_test_folders_evaluate_with_raw_source_rgb(tmp_path):
    """An RGB-only set (testB_rgb + testA1_rgb, no *_raw folders) evaluates with --raw_source rgb exactly as the same
    set with RAW files does; without the flag the missing folder is named with both ways out."""
    import shutil

    data = make_test_set(tmp_path / "data", n=2, h=64, w=96)
    rgb_only = tmp_path / "rgb_only"
    shutil.copytree(data, rgb_only)
    for prefix in ("testB", "testA1", "testA2"):
        shutil.rmtree(rgb_only / f"{prefix}_raw")
    for resize in ("none", "official"):
        opt = dict(phase="test", eval_resize=resize, num_test=0, raw_source="rgb")
        full = RawrrDataset(Namespace(dataroot=str(data), **opt))
        bare = RawrrDataset(Namespace(dataroot=str(rgb_only), **opt))
        assert bare.roles == full.roles and len(bare) == len(full) == 2
        for a, b in zip(full, bare, strict=True):
            assert b["paths"]["I_raw"] == "" and b["camera"] == "default"
            for key in ("I_rgb", "I_raw", "T_rgb", "T_raw", "R_rgb", "R_raw"):
                assert torch.equal(a[key], b[key]), key
    for missing in ("testB", "testA1"):
        bare = tmp_path / f"no_{missing}"
        shutil.copytree(data, bare)
        shutil.rmtree(bare / f"{missing}_raw")
        with pytest.raises(UserError, match=rf"no_{missing} has {missing}_rgb but no {missing}_raw folder.*"
                                            r"--raw_source rgb.*make_rgb_only_set"):
            RawrrDataset(Namespace(dataroot=str(bare), phase="test", eval_resize="none", num_test=0))
    # only one folder of a ground-truth pair, and it is the RAW one: named, whatever --raw_source
    shutil.rmtree(rgb_only / "testA2_rgb")
    (rgb_only / "testA2_raw").mkdir()
    with pytest.raises(UserError, match=r"has testA2_raw but no testA2_rgb"):
        RawrrDataset(Namespace(dataroot=str(rgb_only), phase="test", eval_resize="none", num_test=0, raw_source="rgb"))
    # an odd size loses its last row and column at the native size (the pseudo-RAW's mosaic is even)
    shutil.rmtree(rgb_only / "testA2_raw")
    for prefix in ("testB", "testA1"):
        for f in (rgb_only / f"{prefix}_rgb").iterdir():
            write_rgb(f, read_rgb(f)[:63, :95])
    item = RawrrDataset(Namespace(dataroot=str(rgb_only), phase="test", eval_resize="none", num_test=0,
                                  raw_source="rgb"))[0]
    assert item["I_rgb"].shape == item["T_rgb"].shape == (3, 62, 94) and item["I_raw"].shape == (4, 31, 47)
    assert item["size"] == (63, 95) and "R_rgb" not in item
    # and test.py runs on it end to end
    save_random_generator(tmp_path / "ck" / "twin" / "final_net_G_T.pth", ngf=8, num_cab=1)
    summary = test_script.main(["--dataroot", str(rgb_only), "--name", "twin", "--checkpoints_dir",
                                str(tmp_path / "ck"), "--results_dir", str(tmp_path / "res"), "--gpu_ids", "-1",
                                "--eval_resize", "none", "--no_lpips", "--precision", "fp32", "--raw_source", "rgb"])
    assert summary["raw_source"] == "rgb" and summary["num_images"] == 2 and summary["complete"]
