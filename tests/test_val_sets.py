"""scripts/make_val_sets.py: the held-out validation sets match train.py's hold-out exactly, load as test sets,
and are rebuilt only when their sources change; the learning-curve figure."""

import json
from argparse import Namespace

import numpy as np
import pytest
import torch

from data.pseudo_raw import pseudo_raw_mosaic
from data.rawrr_dataset import RawrrDataset
from data.rawrr_train_dataset import RawrrTrainDataset
from data.splits import is_held_out, split
from scripts import make_val_sets
from util.errors import UserError
from util.image_io import write_rgb


def smooth_u8(rng, h, w):
    grid = rng.uniform(20, 235, size=(1, 3, 3, 4))
    up = torch.nn.functional.interpolate(torch.from_numpy(grid), size=(h, w), mode="bilinear", align_corners=True)
    return up[0].numpy().transpose(1, 2, 0).round().astype(np.uint8)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    for i in range(24):
        for folder in ("blended", "transmission"):
            write_rgb(root / "zhang" / folder / f"{i:03d}.jpg", smooth_u8(rng, 50, 70))
    for stem in ("a", "b"):
        for folder in ("blend", "transmission"):
            write_rgb(root / "la" / folder / f"{stem}.png", smooth_u8(rng, 41, 60))  # odd height: cropped to 40
    for i in range(30):
        write_rgb(root / "photos" / ("sub" if i % 2 else "") / f"p{i:02d}.png", smooth_u8(rng, 40, 56))
    return root


def build(sources, out, *extra):
    return make_val_sets.main(["--out", str(out), "--zhang", str(sources / "zhang"), "--location_aware",
                               str(sources / "la"), "--photos", str(sources / "photos"), "--holdout_every", "4",
                               "--num_synthetic", "3", "--size", "32x48", *extra])


def test_sets_hold_out_exactly_what_training_leaves_out(sources, tmp_path, capsys):
    made = build(sources, tmp_path / "val")
    assert set(made) == set(make_val_sets.SETS)
    zhang = RawrrDataset(Namespace(dataroot=str(made["real_zhang_heldout"]), phase="test", eval_resize="none"))
    stems = [f"{i:03d}" for i in range(24)]
    held = split(stems, 4)[1]
    assert held and [it["stem"] for it in zhang.items] == held
    item = zhang[0]
    assert set(zhang.roles) == {"I", "T"} and item["I_rgb"].shape == (3, 50, 70)
    # the RAW is the fixed inverse ISP of the RGB (pseudo-RAW), quantised in the default profile
    rgb_u8 = (item["I_rgb"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    from data.image_io import read_raw_mosaic
    np.testing.assert_array_equal(read_raw_mosaic(made["real_zhang_heldout"] / "testB_raw" / f"{held[0]}.png"),
                                  pseudo_raw_mosaic(rgb_u8))
    # training with the same --holdout_every never sees these pairs, nor the synthetic set's photos
    train = RawrrTrainDataset(Namespace(dataroot=str(sources / "photos"), phase="train", syn_model="physical",
                                        real_ratio=0.5, crop_size=16, samples_per_epoch=8, seed=0, holdout_every=4,
                                        real_dataroot=[str(sources / "zhang")]))
    assert {e["stem"] for e in train.real_items} == set(stems) - set(held)
    manifest = json.loads((made["syn_upstream_heldout"] / "manifest.json").read_text())
    used = {it["T_source"] for it in manifest["items"]} | {it["R_source"] for it in manifest["items"]}
    assert used and all(is_held_out(name, 4) for name in used)
    assert used.isdisjoint({name for name, _ in train.T_photos})
    assert all(it["T_source"] != it["R_source"] for it in manifest["items"])
    syn = RawrrDataset(Namespace(dataroot=str(made["syn_upstream_heldout"]), phase="test", eval_resize="none"))
    assert len(syn) == 3 and set(syn.roles) == {"I", "T", "R"} and syn[0]["I_rgb"].shape == (3, 32, 48)
    linear = json.loads((made["syn_linear_heldout"] / "manifest.json").read_text())
    assert linear["request"]["model"] == "linear" and all(is_held_out(it["T_source"], 4) for it in linear["items"])
    assert set(linear["items"][0]["params"]) == {"weight", "sigma"}
    la = RawrrDataset(Namespace(dataroot=str(made["real_location_aware"]), phase="test", eval_resize="none"))
    assert len(la) == 2 and la[0]["I_rgb"].shape == (3, 40, 60)
    # deterministic and idempotent: a second run changes nothing
    before = {p: p.read_bytes() for p in (tmp_path / "val").rglob("*") if p.is_file()}
    capsys.readouterr()
    build(sources, tmp_path / "val")
    assert capsys.readouterr().out.count("is up to date") == len(make_val_sets.SETS)
    build(sources, tmp_path / "again")
    for path, data in before.items():
        assert (tmp_path / "again" / path.relative_to(tmp_path / "val")).read_bytes() == data, path


def test_val_set_errors(sources, tmp_path):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "real_location_aware").mkdir()
    (tmp_path / "foreign" / "real_location_aware" / "mine.txt").write_text("x")
    with pytest.raises(UserError, match="did not make"):
        build(sources, tmp_path / "foreign")
    with pytest.raises(UserError, match="--zhang .* is not a folder"):
        make_val_sets.main(["--out", str(tmp_path / "o"), "--zhang", str(tmp_path / "nowhere")])
    with pytest.raises(UserError, match="not an RGB-only pair set"):
        make_val_sets.main(["--out", str(tmp_path / "o"), "--zhang", str(sources / "photos"), "--location_aware", "",
                            "--photos", ""])
    with pytest.raises(SystemExit):
        make_val_sets.main(["--holdout_every", "0"])


def test_learning_curve_png(tmp_path):
    from util.learning_curve import main, read_val_log, write_learning_curve

    log = tmp_path / "val_log.csv"
    header = "iteration,epoch,set,images,T_psnr,T_ssim,T_lpips,I_psnr,I_ssim,I_lpips,gain_psnr,worst_gain_psnr\n"
    rows = ["100,1,a,2,20,0.8,0.2,19,0.7,0.3,1.0,-0.5", "100,1,b,3,15,0.6,,14,0.5,,1.0,0.1",
            "200,1,a,2,21,0.8,0.2,19,0.7,0.3,2.0,0.5", "200,1,a,2,22,0.8,0.2,19,0.7,0.3,3.0,0.5"]
    log.write_text(header + "\n".join(rows) + "\n")
    sets = read_val_log(log)
    assert [r["gain_psnr"] for r in sets["a"]] == [1.0, 3.0]  # a repeated iteration: the later row wins
    assert np.isnan(sets["b"][0]["T_lpips"])
    png = write_learning_curve(log, tmp_path / "out" / "curve.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    main([str(log)])
    assert (tmp_path / "learning_curve.png").is_file()
    # a log with the tone columns also draws the separation; a log mixing old and new rows (resumed) draws too
    from matplotlib import pyplot as plt

    drawn = []
    real_plot = plt.Axes.plot
    plt.Axes.plot = lambda self, *a, **k: drawn.append(k.get("label")) or real_plot(self, *a, **k)
    try:
        log.write_text(header.strip() + ",tone_psnr,separation_psnr,tone_ratio\n"
                       + rows[0] + ",,,\n" + rows[2] + ",20.5,0.5,0.9\n")
        write_learning_curve(log, tmp_path / "sep.png")
    finally:
        plt.Axes.plot = real_plot
    assert "a (separation)" in drawn and read_val_log(log)["a"][1]["separation_psnr"] == 0.5
    (tmp_path / "bad.csv").write_text("iteration,epoch\n1,1\n")
    with pytest.raises(UserError, match="lacks the column"):
        main([str(tmp_path / "bad.csv")])
