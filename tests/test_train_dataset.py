"""data.rawrr_train_dataset: per-sample real/synthetic mixing, Bayer-aware real crops, determinism and errors."""

import argparse
import json
from argparse import Namespace

import numpy as np
import pytest
import torch

from data.image_io import write_png16
from data.rawrr_train_dataset import REAL_FOLDERS, RawrrTrainDataset
from util.errors import UserError
from util.image_io import write_rgb
from util.isp import mosaic_rgb

CROP = 16
REAL_WHITE = 4080  # black 0, white 4080: a count of 16 * v normalises to v / 255 for an 8-bit value v
REAL_CFA = "GBRG"  # not RGGB, and not symmetric under flips: a packing mistake swaps channels


def smooth_u8(rng, h, w):
    grid = rng.uniform(20, 235, size=(1, 3, 3, 4))
    up = torch.nn.functional.interpolate(torch.from_numpy(grid), size=(h, w), mode="bilinear", align_corners=True)
    return up[0].numpy().transpose(1, 2, 0).round().astype(np.uint8)


def make_photos(folder, n=4, size=(24, 28), seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        write_rgb(folder / f"p{i}.png", smooth_u8(rng, *size))


def make_real(root, stems=("a", "b"), size=(40, 44), seed=1):
    """Real triplets whose scene is constant on 2x2 blocks: RGB u8 and a GBRG mosaic of the same colours."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "camera.json").write_text(json.dumps({"cfa": REAL_CFA, "black": 0, "white": REAL_WHITE}))
    h, w = size
    for stem in stems:
        for role in ("I", "T", "R"):
            blocks = rng.integers(0, 256, size=(h // 2, w // 2, 3), dtype=np.uint8)
            rgb = blocks.repeat(2, axis=0).repeat(2, axis=1)
            mosaic = mosaic_rgb(rgb.transpose(2, 0, 1).astype(np.uint16) * 16, REAL_CFA)
            write_rgb(root / REAL_FOLDERS[f"{role}_rgb"] / f"{stem}.png", rgb)
            write_png16(root / REAL_FOLDERS[f"{role}_raw"] / f"{stem}.png", mosaic.astype(np.uint16))


def opt_for(root, **kw):
    base = dict(
        dataroot=str(root),
        phase="train",
        syn_model="physical",
        real_ratio=0.3,
        crop_size=CROP,
        samples_per_epoch=64,
        seed=0,
    )
    base.update(kw)
    return Namespace(**base)


def test_real_crops_and_flips_keep_colour_and_alignment(tmp_path):
    make_real(tmp_path, size=(40, 44))  # 0.7 * 40 = 28 > 16: a 28 px window resized to 16 ...
    ds = RawrrTrainDataset(opt_for(tmp_path, real_ratio=1.0, crop_size=CROP))
    assert ds.T_photos == []  # no photos needed when every sample is real
    small = RawrrTrainDataset(opt_for(tmp_path, real_ratio=1.0, crop_size=32))
    # ... so the exact check uses a crop that needs no resize: 32 >= 0.7 * 40 -> window = crop, even offsets only
    flips = set()
    for index in range(24):
        item = small[index]
        assert bool(item["is_real"]) and item["source"].startswith("real:")
        for role in ("I", "T", "R"):
            # packed channel c holds the RGB colour of c at the same place (the scene is 2x2-block constant)
            rgb, raw = item[f"{role}_rgb"], item[f"{role}_raw"]
            assert rgb.shape == (3, 32, 32) and raw.shape == (4, 16, 16)
            for channel, colour in enumerate((0, 1, 1, 2)):  # [R, G1, G2, B]
                torch.testing.assert_close(raw[channel], rgb[colour, ::2, ::2], atol=1e-6, rtol=0)
                torch.testing.assert_close(raw[channel], rgb[colour, 1::2, 1::2], atol=1e-6, rtol=0)
        rng = small.rng_for(index)
        rng.random(), rng.integers(2), rng.integers(5), rng.integers(7)  # real?, which, top, left
        flips.add((bool(rng.random() < 0.5), bool(rng.random() < 0.5)))
    assert len(flips) == 4  # every flip combination was exercised
    item = ds[0]
    assert item["I_rgb"].shape == (3, CROP, CROP) and item["I_raw"].shape == (4, CROP // 2, CROP // 2)
    # resized real crops keep the colour of each channel (compare means, resizing mixes neighbours)
    for role in ("I", "T", "R"):
        means = item[f"{role}_raw"].mean(dim=(1, 2))
        rgb_means = item[f"{role}_rgb"].mean(dim=(1, 2))
        torch.testing.assert_close(means[[0, 1, 3]], rgb_means, atol=0.02, rtol=0)


def test_real_ratio_is_decided_per_sample(tmp_path):
    make_photos(tmp_path / "photos")
    make_real(tmp_path / "photos", size=(24, 24))
    ds = RawrrTrainDataset(opt_for(tmp_path / "photos", real_ratio=0.5, samples_per_epoch=32))
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=False)
    batches = [batch["is_real"] for batch in loader]
    flags = torch.cat(batches)
    assert flags.dtype == torch.bool and 8 <= int(flags.sum()) <= 24
    assert any(0 < int(b.sum()) < len(b) for b in batches)  # real and synthetic side by side in one batch
    for extreme, expected in ((0.0, False), (1.0, True)):
        ds = RawrrTrainDataset(opt_for(tmp_path / "photos", real_ratio=extreme, samples_per_epoch=12))
        assert all(bool(ds[i]["is_real"]) is expected for i in range(12))


def test_synthetic_samples_shapes_sources_and_determinism(tmp_path):
    make_photos(tmp_path / "a" / "nested", n=3)
    make_photos(tmp_path / "b", n=2, seed=5)
    make_photos(tmp_path / "testB_rgb", n=2, seed=6)  # a test folder of the layout: never a synthesis source
    ds = RawrrTrainDataset(opt_for(tmp_path, real_ratio=0.3))  # no real_* folders: all synthetic
    assert ds.real_ratio == 0.0 and len(ds) == 64 and len(ds.T_photos) == 5
    names = {name for name, _ in ds.T_photos}
    assert not any(n.startswith("testB_rgb") for n in names)
    for index in range(8):
        item = ds[index]
        assert not bool(item["is_real"])
        t_name, r_name = item["source"][4:].split("|")
        assert t_name != r_name and {t_name, r_name} <= names
        for role in ("I", "T", "R"):
            assert item[f"{role}_rgb"].shape == (3, CROP, CROP) and item[f"{role}_raw"].shape == (4, 8, 8)
            assert item[f"{role}_rgb"].dtype == torch.float32
    # a pure function of (seed, epoch, index): same in a new instance, different in another epoch / seed
    again = RawrrTrainDataset(opt_for(tmp_path))
    assert torch.equal(ds[3]["I_raw"], again[3]["I_raw"])
    again.set_epoch(1)
    assert not torch.equal(ds[3]["I_raw"], again[3]["I_raw"])
    other = RawrrTrainDataset(opt_for(tmp_path, seed=1))
    assert not torch.equal(ds[3]["I_rgb"], other[3]["I_rgb"])
    # DataLoader workers give exactly the serial samples (no repeats between workers)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    first = next(iter(loader))
    serial = torch.stack([ds[i]["I_rgb"] for i in range(4)])
    assert torch.equal(first["I_rgb"], serial)
    assert len({tuple(x.flatten()[:8].tolist()) for x in first["I_rgb"]}) == 4


def test_upstream_mode_and_split_folders(tmp_path):
    make_photos(tmp_path / "trainA1_rgb", n=2, size=(30, 20))
    make_photos(tmp_path / "trainA2_rgb", n=2, size=(12, 40), seed=3)  # smaller than the crop: resized anyway
    ds = RawrrTrainDataset(opt_for(tmp_path, syn_model="upstream", real_ratio=0))
    assert not ds.shared_pool and all(img.shape == (CROP, CROP, 3) for _, img in ds.T_photos + ds.R_photos)
    item = ds[0]
    t_name, r_name = item["source"][4:].split("|")
    assert t_name.startswith("trainA1_rgb/") and r_name.startswith("trainA2_rgb/")
    t = item["T_rgb"] ** 2.2  # upstream: T_raw is the RGGB mosaic of T^2.2
    expected = torch.stack([t[0, 0::2, 0::2], t[1, 0::2, 1::2], t[1, 1::2, 0::2], t[2, 1::2, 1::2]])
    torch.testing.assert_close(item["T_raw"], expected)


def test_photo_cache_downscales_large_photos(tmp_path):
    rng = np.random.default_rng(0)
    write_rgb(tmp_path / "big.png", smooth_u8(rng, 600, 1000))
    write_rgb(tmp_path / "small.png", smooth_u8(rng, 40, 40))
    ds = RawrrTrainDataset(opt_for(tmp_path, real_ratio=0))
    shapes = {name: img.shape for name, img in ds.T_photos}
    assert shapes == {"big.png": (512, 853, 3), "small.png": (40, 40, 3)}


def test_errors_name_the_problem(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="empty.*holds no images"):
        RawrrTrainDataset(opt_for(empty))
    one = tmp_path / "one"
    make_photos(one, n=1)
    with pytest.raises(UserError, match="only 1 photo"):
        RawrrTrainDataset(opt_for(one))
    small = tmp_path / "small"
    make_photos(small, n=2, size=(12, 40))
    with pytest.raises(UserError, match=r"p0.png is 40x12 \(width x height\), smaller than --crop_size 16"):
        RawrrTrainDataset(opt_for(small))
    bad = tmp_path / "bad"
    make_photos(bad, n=2)
    (bad / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        RawrrTrainDataset(opt_for(bad))
    half = tmp_path / "half"
    make_photos(half / "trainA1_rgb", n=2)
    with pytest.raises(UserError, match="trainA1_rgb but no trainA2_rgb"):
        RawrrTrainDataset(opt_for(half))
    partial = tmp_path / "partial"
    make_photos(partial, n=2)
    (partial / "real_I_rgb").mkdir()
    with pytest.raises(UserError, match="lacks real_T_rgb"):
        RawrrTrainDataset(opt_for(partial))
    with pytest.raises(UserError, match="multiple of 8"):
        RawrrTrainDataset(opt_for(bad, crop_size=12))
    with pytest.raises(UserError, match="real_ratio"):
        RawrrTrainDataset(opt_for(bad, real_ratio=1.5))
    with pytest.raises(UserError, match="needs real samples"):
        RawrrTrainDataset(opt_for(one, real_ratio=1.0))
    with pytest.raises(UserError, match="not a folder"):
        RawrrTrainDataset(opt_for(tmp_path / "missing"))
    real_small = tmp_path / "real_small"
    make_real(real_small, size=(12, 12))
    with pytest.raises(UserError, match="12x12 .*smaller than --crop_size 16"):
        RawrrTrainDataset(opt_for(real_small, real_ratio=1.0))[0]


def test_command_line_options():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)  # defined by the shared options already
    RawrrTrainDataset.modify_commandline_options(parser, True)
    opt = parser.parse_args([])
    assert (opt.syn_model, opt.real_ratio, opt.crop_size, opt.samples_per_epoch, opt.seed) == (
        "physical",
        0.3,
        256,
        4000,
        7,
    )
    assert parser.parse_args(["--syn_model", "upstream"]).syn_model == "upstream"
    with pytest.raises(SystemExit):
        parser.parse_args(["--syn_model", "fancy"])


def test_shared_photos(shared_data):
    ds = RawrrTrainDataset(opt_for(shared_data / "photos" / "kodak24", crop_size=256, real_ratio=0))
    assert len(ds.T_photos) == 24
    for index in range(2):
        item = ds[index]
        assert item["I_rgb"].shape == (3, 256, 256) and item["I_raw"].shape == (4, 128, 128)
        assert 0 <= float(item["I_rgb"].min()) and float(item["I_rgb"].max()) <= 1
        assert float(item["T_rgb"].max()) >= 0.15 and float(item["R_rgb"].max()) >= 0.15  # the skip rule held


def test_real_triplet_from_a_camera_raw_file(shared_data, tmp_path):
    """A KDC (GRBG, levels from its metadata) in real_*_raw pairs with a PNG; packing follows the file's CFA."""
    from data.camera_raw import read_camera_raw, render_rgb

    source = shared_data / "raw" / "rawpy_RAW_KODAK_DC50.KDC"
    rgb = render_rgb(read_camera_raw(source))
    for role in ("I", "T", "R"):
        (tmp_path / REAL_FOLDERS[f"{role}_raw"]).mkdir()
        (tmp_path / REAL_FOLDERS[f"{role}_raw"] / "kodak.kdc").symlink_to(source)
        write_rgb(tmp_path / REAL_FOLDERS[f"{role}_rgb"] / "kodak.png", rgb)
    ds = RawrrTrainDataset(opt_for(tmp_path, real_ratio=1.0, crop_size=64, samples_per_epoch=4))
    for index in range(3):
        item = ds[index]
        assert bool(item["is_real"]) and item["I_raw"].shape == (4, 32, 32)
        assert torch.equal(item["I_raw"], item["T_raw"])  # one file for all roles, one crop and flip for all
        raw = item["I_raw"]
        assert 0 <= float(raw.min()) and float(raw.max()) <= 1  # black 0, white 16383 from the file
        # the two greens are the two green sites: far closer to each other than to red or blue
        green_gap = float((raw[1] - raw[2]).abs().mean())
        assert green_gap < 0.5 * float((raw[0] - raw[1]).abs().mean())
        assert green_gap < 0.5 * float((raw[3] - raw[1]).abs().mean())


def test_physical_ranges_reach_the_synthesis(tmp_path):
    make_photos(tmp_path, n=3)
    no_glass = RawrrTrainDataset(opt_for(tmp_path, reflection_gain=[0.0, 0.0], transmittance=[1.0, 1.0]))
    assert no_glass.physical_config.reflection_gain == (0.0, 0.0)
    for index in range(4):
        item = no_glass[index]
        assert torch.count_nonzero(item["R_raw"]) == 0  # no reflection at all
        assert (item["I_raw"] - item["T_raw"]).abs().mean() < 0.02  # I is T plus sensor noise
    default = RawrrTrainDataset(opt_for(tmp_path))  # options without the ranges: the model's defaults
    assert default.physical_config.reflection_gain == (0.15, 0.6)
    assert any(torch.count_nonzero(default[i]["R_raw"]) > 0 for i in range(4))
    with pytest.raises(UserError, match=r"--reflection_gain 0.5 0.2: need 0 <= LO <= HI"):
        RawrrTrainDataset(opt_for(tmp_path, reflection_gain=[0.5, 0.2]))
    with pytest.raises(UserError, match=r"--transmittance 0.5 1.5"):
        RawrrTrainDataset(opt_for(tmp_path, transmittance=[0.5, 1.5]))
    parser = argparse.ArgumentParser()
    RawrrTrainDataset.modify_commandline_options(parser, True)
    opt = parser.parse_args(["--reflection_gain", "0.1", "0.4"])
    assert opt.reflection_gain == [0.1, 0.4] and opt.transmittance == [0.75, 1.0]
    assert opt.exposure == [1.0, 1.0] and opt.shot_noise == [1e-4, 1e-3]


def test_exposure_and_noise_ranges_reach_the_synthesis(tmp_path):
    """--exposure and --shot_noise: drawn per sample in their ranges; a bright exposure clips the RGB where the RAW
    keeps headroom (what a RAW input can add); the defaults draw no exposure at all (the same samples as before)."""
    make_photos(tmp_path, n=3)
    bright = RawrrTrainDataset(opt_for(tmp_path, exposure=[2.5, 3.0], shot_noise=[5e-3, 1e-2]))
    assert bright.physical_config.exposure == (2.5, 3.0) and bright.physical_config.shot_noise == (5e-3, 1e-2)
    default = RawrrTrainDataset(opt_for(tmp_path, exposure=[1.0, 1.0]))
    clipped_rgb_only = 0
    for index in range(3):
        b, d = bright[index], default[index]
        assert b["source"] == d["source"]  # the same photos: only the draws of the physical model differ
        clipped_rgb_only += int(((b["I_rgb"].amax(0)[::2, ::2] >= 1.0) & (b["I_raw"].amax(0) < 0.99)).sum())
        assert b["I_rgb"].mean() > d["I_rgb"].mean()
    assert clipped_rgb_only > 0
    assert torch.equal(default[0]["I_raw"], RawrrTrainDataset(opt_for(tmp_path))[0]["I_raw"])
    with pytest.raises(UserError, match=r"--exposure 0 2: need 0.01 <= LO <= HI"):
        RawrrTrainDataset(opt_for(tmp_path, exposure=[0.0, 2.0]))
    with pytest.raises(UserError, match=r"--shot_noise"):
        RawrrTrainDataset(opt_for(tmp_path, shot_noise=[1e-3, 1e-4]))


def make_pairs(root, stems=("a", "b", "c"), size=(40, 44), seed=2, layout=("real_I_rgb", "real_T_rgb")):
    """RGB-only real pairs (no RAW, no R) in the given two folders (input, transmission)."""
    rng = np.random.default_rng(seed)
    for stem in stems:
        for folder in layout:
            write_rgb(root / folder / f"{stem}.png", smooth_u8(rng, *size))


def test_rgb_only_pairs_train_with_pseudo_raw_and_no_r(tmp_path):
    from data.pseudo_raw import pseudo_packed_raw, pseudo_raw_mosaic
    from util.isp import normalize_raw, pack_raw

    make_pairs(tmp_path / "pairs")
    ds = RawrrTrainDataset(opt_for(tmp_path / "pairs", real_ratio=1.0, crop_size=CROP))
    assert len(ds.real_items) == 3 and set(ds.real_items[0]["paths"]) == {"I_rgb", "T_rgb"}
    sides = set()
    for index in range(12):
        item = ds[index]
        assert bool(item["is_real"]) and not bool(item["has_R"])
        assert item["R_rgb"].shape == (3, CROP, CROP) and not item["R_rgb"].any() and not item["R_raw"].any()
        for role in ("I", "T"):  # the RAW is the fixed inverse ISP of the resized crop
            torch.testing.assert_close(item[f"{role}_raw"], pseudo_packed_raw(item[f"{role}_rgb"]), atol=0, rtol=0)
        rng = ds.rng_for(index)
        rng.random(), rng.integers(3)
        sides.add(int(rng.integers(CROP // 2, 28 // 2 + 1)) * 2)
    assert len(sides) > 1  # RGB-only pairs are cropped at several scales
    # the float path equals packing the uint8 mosaic that make_rgb_only_set.py / make_val_sets.py write
    rgb = smooth_u8(np.random.default_rng(3), 10, 12)
    mosaic = pseudo_raw_mosaic(rgb)
    expected = normalize_raw(pack_raw(mosaic, "RGGB"), 400, 16383)
    got = pseudo_packed_raw(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    np.testing.assert_array_equal(got.numpy(), expected)
    # pairs with R but without RAW: R is used, the RAW is still made from the RGB
    make_pairs(tmp_path / "withR", layout=("real_I_rgb", "real_T_rgb", "real_R_rgb"))
    item = RawrrTrainDataset(opt_for(tmp_path / "withR", real_ratio=1.0))[0]
    assert bool(item["has_R"]) and item["R_rgb"].any()
    torch.testing.assert_close(item["R_raw"], pseudo_packed_raw(item["R_rgb"]), atol=0, rtol=0)
    # triplets keep their R
    make_real(tmp_path / "trip")
    assert bool(RawrrTrainDataset(opt_for(tmp_path / "trip", real_ratio=1.0))[0]["has_R"])


def test_real_dataroot_layouts_holdout_and_errors(tmp_path):
    from data.splits import is_held_out

    stems = [f"{i:03d}" for i in range(40)]
    make_pairs(tmp_path / "zhang", stems=stems, layout=("blended", "transmission"))
    make_pairs(tmp_path / "la", stems=("x", "y"), layout=("blend", "transmission"))
    make_photos(tmp_path / "photos", n=24)
    opt = opt_for(tmp_path / "photos", real_ratio=0.5, real_dataroot=[str(tmp_path / "zhang"), str(tmp_path / "la")])
    ds = RawrrTrainDataset(opt)
    assert len(ds.real_items) == 42 and {e["stem"] for e in ds.real_items} == set(stems) | {"x", "y"}
    held = [s for s in stems if is_held_out(s, 8)]
    held_photos = [f"p{i}.png" for i in range(24) if is_held_out(f"p{i}.png", 8)]
    assert held and held_photos  # the fixtures exercise the rule
    ds = RawrrTrainDataset(dict_opt := Namespace(**{**vars(opt), "holdout_every": 8}))
    kept = {e["stem"] for e in ds.real_items}
    assert kept.isdisjoint(held) and len(kept) + len(held) == 40 + 2 - sum(is_held_out(s, 8) for s in "xy")
    assert ds.held_out_real == len(held) + sum(is_held_out(s, 8) for s in "xy")
    names = {name for name, _ in ds.T_photos}
    assert names.isdisjoint(held_photos) and len(names) == 24 - len(held_photos) == 24 - ds.held_out_photos
    sources = {ds[i]["source"] for i in range(64)}
    assert not any(s[5:] in held for s in sources if s.startswith("real:"))
    assert dict_opt.holdout_every == 8
    # the pair layouts count only under --real_dataroot: in --dataroot they are ordinary photo folders
    assert RawrrTrainDataset(opt_for(tmp_path / "zhang", real_ratio=0.5)).real_ratio == 0.0
    with pytest.raises(UserError, match="holds no real samples"):
        RawrrTrainDataset(opt_for(tmp_path / "photos", real_dataroot=[str(tmp_path / "photos")]))
    with pytest.raises(UserError, match="is not a folder"):
        RawrrTrainDataset(opt_for(tmp_path / "photos", real_dataroot=[str(tmp_path / "nowhere")]))
    make_pairs(tmp_path / "partial", layout=("real_I_rgb", "real_T_rgb", "real_I_raw"))
    with pytest.raises(UserError, match="lacks real_T_raw"):
        RawrrTrainDataset(opt_for(tmp_path / "photos", real_dataroot=[str(tmp_path / "partial")]))
    with pytest.raises(UserError, match="--holdout_every -1"):
        RawrrTrainDataset(opt_for(tmp_path / "photos", holdout_every=-1))


def test_pseudo_raw_ratio_gives_synthetic_samples_the_raw_of_an_rgb_only_photo(tmp_path):
    from data.pseudo_raw import pseudo_packed_raw

    make_photos(tmp_path / "photos", n=4, size=(24, 28))
    plain = RawrrTrainDataset(opt_for(tmp_path / "photos", real_ratio=0.0))
    pseudo = RawrrTrainDataset(opt_for(tmp_path / "photos", real_ratio=0.0, pseudo_raw_ratio=1.0))
    for index in range(6):
        a, b = plain[index], pseudo[index]
        assert torch.equal(a["I_rgb"], b["I_rgb"]) and b["source"].endswith("|pseudo_raw")
        for role in ("I", "T", "R"):
            torch.testing.assert_close(b[f"{role}_raw"], pseudo_packed_raw(b[f"{role}_rgb"]), atol=0, rtol=0)
        assert not torch.equal(a["I_raw"], b["I_raw"])  # the physical model's RAW comes from a random camera
    half = RawrrTrainDataset(opt_for(tmp_path / "photos", real_ratio=0.0, pseudo_raw_ratio=0.5, samples_per_epoch=40))
    tagged = sum(half[i]["source"].endswith("|pseudo_raw") for i in range(40))
    assert 8 <= tagged <= 32
    with pytest.raises(UserError, match="--pseudo_raw_ratio 1.5"):
        RawrrTrainDataset(opt_for(tmp_path / "photos", pseudo_raw_ratio=1.5))


def test_upstream_ratio_mixes_upstream_synthesis_per_sample(tmp_path):
    make_photos(tmp_path / "photos", n=4, size=(24, 28))
    ds = RawrrTrainDataset(opt_for(tmp_path / "photos", real_ratio=0.0, upstream_ratio=0.5, samples_per_epoch=40))
    tagged = [ds[i]["source"].endswith("|upstream") for i in range(40)]
    assert 8 <= sum(tagged) <= 32
    item = ds[tagged.index(True)]
    # upstream's model: RAW = RGGB mosaic of the linear (x^2.2) mix, no camera, so R and B sit at the RGB's places
    lin = item["T_rgb"] ** 2.2
    torch.testing.assert_close(item["T_raw"][0], lin[0, ::2, ::2], atol=1e-5, rtol=0)
    torch.testing.assert_close(item["T_raw"][3], lin[2, 1::2, 1::2], atol=1e-5, rtol=0)
    plain = RawrrTrainDataset(opt_for(tmp_path / "photos", real_ratio=0.0, samples_per_epoch=40))
    assert not any(plain[i]["source"].endswith("|upstream") for i in range(10))
    with pytest.raises(UserError, match="--upstream_ratio -0.1"):
        RawrrTrainDataset(opt_for(tmp_path / "photos", upstream_ratio=-0.1))
