"""scripts/make_demo_dataset.py: byte-for-byte determinism, idempotence, loading through RawrrDataset, baseline PSNR."""

import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from data.rawrr_dataset import RawrrDataset, official_test_size
from data.synthesis import render_rgb_from_raw
from scripts import make_demo_dataset as demo
from util.errors import UserError
from util.image_io import to_uint8
from util.isp import ISPParams
from util.metrics import psnr

SIZE = "64x96"
NUM = 3


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    demo.main(["--out", str(out), "--num", str(NUM), "--seed", "0", "--size", SIZE])
    return out


def test_bit_for_bit_deterministic_and_idempotent(demo_dir, tmp_path, capsys):
    files = tree_bytes(demo_dir)
    expected = {"manifest.json", "README.txt", "camera.json"}
    for prefix in ("testB", "testA1", "testA2"):
        assert len([f for f in files if f.startswith(f"{prefix}_rgb/")]) == NUM
        assert len([f for f in files if f.startswith(f"{prefix}_raw/")]) == NUM
    assert expected <= set(files)
    second = tmp_path / "again"
    demo.main(["--out", str(second), "--num", str(NUM), "--seed", "0", "--size", SIZE])
    assert tree_bytes(second) == files
    # a complete folder with the same manifest is left alone
    mtimes = {p: p.stat().st_mtime_ns for p in demo_dir.rglob("*")}
    assert demo.make_demo_dataset(demo_dir, NUM, 0, (64, 96)) is False
    assert "up to date" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in demo_dir.rglob("*")} == mtimes
    # another seed regenerates different data in place
    assert demo.make_demo_dataset(second, NUM, 1, (64, 96)) is True
    reseeded = tree_bytes(second)
    inputs = {name: data for name, data in files.items() if name.startswith("testB_rgb/")}
    assert not set(inputs.values()) & {data for name, data in reseeded.items() if name.startswith("testB_rgb/")}
    # an incomplete folder is regenerated
    next(second.glob("testA2_raw/*.png")).unlink()
    assert demo.make_demo_dataset(second, NUM, 1, (64, 96)) is True


def test_loads_through_rawrr_dataset_with_consistent_ground_truth(demo_dir):
    manifest = json.loads((demo_dir / "manifest.json").read_text())
    ds = RawrrDataset(Namespace(dataroot=str(demo_dir), phase="test", eval_resize="none", num_test=0))
    assert len(ds) == NUM and ds.roles == {"I": "testB", "T": "testA1", "R": "testA2"}
    lo, hi = demo.BASELINE_PSNR_RANGE
    for index, entry in enumerate(manifest["items"]):
        item = ds[index]
        assert item["stem"] == entry["stem"] and item["camera"] == "default"
        assert item["I_rgb"].shape == (3, 64, 96) and item["T_raw"].shape == (4, 32, 48)
        t_source, r_source = entry["T_source"], entry["R_source"]
        assert t_source != r_source  # T and R come from different photos
        # the do-nothing baseline on the saved 8-bit files is the manifest's and lies in the intended range
        baseline = psnr(to_uint8(item["T_rgb"]), to_uint8(item["I_rgb"]))
        assert baseline == pytest.approx(entry["baseline_psnr_db"], abs=1e-3)
        assert lo <= baseline <= hi
        # the saved RGB is the camera rendering of the saved RAW (up to 8-bit rounding)
        isp_json = entry["params"]["isp"]
        isp = ISPParams(
            np.array(isp_json["ccm_srgb_to_cam"]), isp_json["red_gain"], isp_json["blue_gain"], isp_json["rgb_gain"]
        )
        for role in ("I", "T", "R"):
            rendered = render_rgb_from_raw(item[f"{role}_raw"], isp)
            assert float((rendered - item[f"{role}_rgb"]).abs().max()) <= 0.5 / 255 + 1e-6
        # RAW holds the camera's counts: nothing below black in the noise-free T, nothing above white
        assert float(item["T_raw"].min()) >= 0 and float(item["I_raw"].max()) <= 1


def test_default_size_passes_the_official_resize_and_cli_errors(tmp_path, capsys):
    assert official_test_size(*demo.DEFAULT_SIZE) == demo.DEFAULT_SIZE
    assert all((Path(demo.skimage_data_dir()) / name).is_file() for name in demo.DEMO_PHOTOS)
    with pytest.raises(SystemExit) as info:
        demo.main(["--help"])
    assert info.value.code == 0 and "--size" in capsys.readouterr().out
    with pytest.raises(UserError, match="HxW"):
        demo.main(["--out", str(tmp_path / "x"), "--size", "64"])
    with pytest.raises(UserError, match="even"):
        demo.main(["--out", str(tmp_path / "x"), "--size", "63x96"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("user data")
    with pytest.raises(UserError, match="did not make"):
        demo.main(["--out", str(foreign), "--num", "1", "--size", SIZE])
    assert (foreign / "mine.txt").read_text() == "user data"
