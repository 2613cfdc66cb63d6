"""Camera RAW files through the data layer, test.py and remove_reflection.py (DNGs written with pidng)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import remove_reflection
import test as test_script
from data.camera_raw import render_rgb
from tests.test_camera_raw import save_jpeg, scene_dng
from tests.tiny_data import save_random_generator
from util.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_random_generator(tmp_path_factory.mktemp("w") / "final_net_G_T.pth", ngf=8, num_cab=1)


def test_upstream_layout_with_camera_raw_files(tmp_path, weights):
    pytest.importorskip("pidng")
    root = tmp_path / "set"
    (root / "testB_raw").mkdir(parents=True)
    (root / "testB_rgb").mkdir()
    cam = scene_dng(root / "testB_raw" / "a.dng", h=64, w=96, seed=1, pattern="GBRG")
    save_jpeg(root / "testB_rgb" / "a.jpg", render_rgb(cam))
    scene_dng(root / "testB_raw" / "b.dng", h=64, w=96, seed=2, pattern="BGGR")  # no JPEG: rendered from the RAW
    ck = tmp_path / "ck" / "cam"
    ck.mkdir(parents=True)
    (ck / "final_net_G_T.pth").write_bytes(weights.read_bytes())
    summary = test_script.main(["--dataroot", str(root), "--name", "cam", "--checkpoints_dir", str(tmp_path / "ck"),
                                "--results_dir", str(tmp_path / "res"), "--eval_resize", "none", "--gpu_ids", "-1"])
    assert summary["num_images"] == 2
    out = tmp_path / "res" / "cam" / "test_final" / "images"
    assert np.asarray(Image.open(out / "a_T.png")).shape == (64, 96, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "b_I.png")), render_rgb(root / "testB_raw" / "b.dng"))


def test_remove_reflection_full_resolution_and_orientation(tmp_path, weights):
    pytest.importorskip("pidng")
    (tmp_path / "in").mkdir()
    scene_dng(tmp_path / "in" / "p.dng", h=96, w=128, seed=3, orientation=6)
    code = remove_reflection.main([str(tmp_path / "in" / "p.dng"), "-o", str(tmp_path / "out"), "--checkpoint",
                                   str(weights), "--save_reflection", "--tile", "64", "--gpu_ids", "-1"])
    assert code == 0
    T = np.asarray(Image.open(tmp_path / "out" / "p_T.png"))
    assert T.shape == (128, 96, 3)  # orientation 6: rotated to the viewing orientation
    assert (tmp_path / "out" / "p_R.png").is_file()


def test_remove_reflection_folder_goes_on_after_a_bad_file(tmp_path, weights):
    pytest.importorskip("pidng")
    folder = tmp_path / "in"
    folder.mkdir()
    scene_dng(folder / "good.dng", h=64, w=64, seed=4)
    (folder / "broken.nef").write_bytes(b"\x00" * 2048)
    proc = subprocess.run([sys.executable, "remove_reflection.py", str(folder), "-o", str(tmp_path / "out"),
                           "--checkpoint", str(weights), "--gpu_ids", "-1", "--format", "jpg"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert (tmp_path / "out" / "good_T.jpg").is_file()
    assert "1 of 2 photo(s) done; 1 failed" in proc.stderr and "broken.nef" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_remove_reflection_input_errors(tmp_path, weights):
    pytest.importorskip("pidng")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no camera RAW"):
        remove_reflection.main([str(tmp_path / "empty"), "-o", str(tmp_path / "o"), "--checkpoint", str(weights)])
    cam_path = tmp_path / "x.dng"
    scene_dng(cam_path, h=64, w=96, seed=5)
    other = scene_dng(tmp_path / "other.dng", h=64, w=96, seed=6)
    save_jpeg(tmp_path / "wrong.jpg", render_rgb(other))
    with pytest.raises(UserError, match="does not belong"):
        remove_reflection.main([str(cam_path), str(tmp_path / "wrong.jpg"), "-o", str(tmp_path / "o"),
                                "--checkpoint", str(weights), "--gpu_ids", "-1"])
    with pytest.raises(UserError, match="right after its RAW"):
        remove_reflection.main([str(tmp_path / "wrong.jpg"), "-o", str(tmp_path / "o"), "--checkpoint", str(weights)])
