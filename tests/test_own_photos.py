"""Camera RAW files through the data layer, test.py and remove_reflection.py (DNGs written with pidng)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import remove_reflection
import test as test_script
from data.camera_raw import render_rgb
from data.pseudo_raw import pseudo_packed_raw
from tests.test_camera_raw import save_jpeg, scene_dng
from tests.tiny_data import save_random_generator
from util.errors import UserError
from util.errors import run_cli as run_main_cli

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
    with pytest.raises(UserError, match="holds no photo"):
        remove_reflection.main([str(tmp_path / "empty"), "-o", str(tmp_path / "o"), "--checkpoint", str(weights)])
    cam_path = tmp_path / "x.dng"
    scene_dng(cam_path, h=64, w=96, seed=5)
    other = scene_dng(tmp_path / "other.dng", h=64, w=96, seed=6)
    save_jpeg(tmp_path / "wrong.jpg", render_rgb(other))
    with pytest.raises(UserError, match="does not belong"):
        remove_reflection.main([str(cam_path), str(tmp_path / "wrong.jpg"), "-o", str(tmp_path / "o"),
                                "--checkpoint", str(weights), "--gpu_ids", "-1"])
    with pytest.raises(UserError, match=r"wrong\.jpg has no RAW file; give its RAW file .* or drop --raw_out"):
        remove_reflection.main([str(tmp_path / "wrong.jpg"), "-o", str(tmp_path / "o"), "--checkpoint", str(weights),
                                "--raw_out"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=r"notes\.txt: unsupported file type '\.txt'"):
        remove_reflection.main([str(tmp_path / "notes.txt"), "-o", str(tmp_path / "o"), "--checkpoint", str(weights)])


class CapturingNet(torch.nn.Module):
    """Removes nothing (T = I, R = 0) and keeps the RAW input it was given."""

    def __init__(self):
        super().__init__()
        self.raws = []

    def forward(self, I_rgb, I_raw):
        self.raws.append(I_raw.detach().clone())
        return (torch.zeros_like(I_rgb), I_rgb), (torch.zeros_like(I_raw), I_raw)


def test_photo_without_a_raw_file_runs_as_the_rgb_only_twin(tmp_path):
    """A JPEG alone (odd size, EXIF orientation 6): the network sees the pseudo-RAW of the upright image, and the
    results are the photo's full size in its viewing orientation (a network that removes nothing gives T = I)."""
    rgb = np.asarray(Image.fromarray(
        np.random.default_rng(7).integers(0, 256, (7, 9, 3), np.uint8)).resize((45, 31), Image.BILINEAR))
    photo = save_jpeg(tmp_path / "phone.jpg", rgb, exif_orientation=6)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(photo)).convert("RGB"))
    assert upright.shape == (45, 31, 3)
    net = CapturingNet()
    code = remove_reflection.main([str(photo), "-o", str(tmp_path / "out"), "--save_reflection", "--tile", "0",
                                   "--gpu_ids", "-1", "--precision", "fp32"], net=net)
    assert code == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "phone_T.png")), upright)
    assert np.asarray(Image.open(tmp_path / "out" / "phone_R.png")).shape == (45, 31, 3)
    padded = np.pad(upright, ((0, 1), (0, 1), (0, 0)), mode="edge")  # 45x31 -> 46x32: a Bayer mosaic is even
    expected = pseudo_packed_raw(torch.from_numpy(padded).permute(2, 0, 1).float() / 255)
    (seen,) = net.raws  # padded further to the network's size multiple by the inference code
    torch.testing.assert_close(seen[0, :, :23, :16], expected, rtol=0, atol=1e-6)


def test_folder_gives_raw_photos_and_jpegs_without_a_raw(tmp_path, weights, capsys):
    """x.dng + x.jpg is one photo (RAW with its JPEG), y.jpg another (no RAW); a JPEG right after a RAW on the command
    line is that RAW's JPEG, a second one is a photo of its own; --raw_out refuses before any inference."""
    pytest.importorskip("pidng")
    folder = tmp_path / "in"
    folder.mkdir()
    cam = scene_dng(folder / "x.dng", h=64, w=96, seed=8)
    save_jpeg(folder / "x.jpg", render_rgb(cam))
    save_jpeg(folder / "y.jpg", render_rgb(scene_dng(tmp_path / "other.dng", h=64, w=96, seed=9)))
    jobs = remove_reflection.collect_jobs([folder])
    assert [(j.raw and j.raw.name, j.rgb and j.rgb.name) for j in jobs] == [("x.dng", "x.jpg"), (None, "y.jpg")]
    jobs = remove_reflection.collect_jobs([folder / "x.dng", folder / "y.jpg", folder / "x.jpg"])
    assert [(j.raw and j.raw.name, j.rgb.name) for j in jobs] == [("x.dng", "y.jpg"), (None, "x.jpg")]
    assert run([folder, "-o", tmp_path / "out"], weights) == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"x_T.png", "y_T.png"}
    out = capsys.readouterr().out
    assert "x.dng (camera JPEG x.jpg)" in out and "y.jpg (no RAW file: RAW made from the RGB" in out


def test_folder_takes_every_rgb_format_and_leaves_out_results(tmp_path, capsys):
    """PNG / TIFF / BMP / WebP photos without a RAW are photos too; a folder that a run wrote into gives its photos
    again, not its results (x_T.png, x_R.jpg, x_T.dng); another image of a RAW's stem is that photo; each left-out
    file is named in a note; a folder of results only is refused."""
    pytest.importorskip("pidng")
    folder = tmp_path / "in"
    folder.mkdir()
    cam = scene_dng(folder / "x.dng", h=64, w=96, seed=8)
    save_jpeg(folder / "x.jpg", render_rgb(cam))
    rgb = render_rgb(cam)
    for name in ("x.tif", "y.png", "z.tiff", "w.bmp", "v.webp", "x_T.png", "x_R.jpg", "y_T.png"):
        Image.fromarray(rgb).save(folder / name)
    scene_dng(folder / "x_T.dng", h=64, w=96, seed=8)
    (folder / "x.xmp").write_text("<x:xmpmeta/>")
    (folder / "notes.txt").write_text("shot through the shop window")
    jobs = remove_reflection.collect_jobs([folder])
    assert [(j.raw and j.raw.name, j.rgb and j.rgb.name) for j in jobs] == [
        ("x.dng", "x.jpg"), (None, "v.webp"), (None, "w.bmp"), (None, "y.png"), (None, "z.tiff")]
    out = capsys.readouterr().out
    assert "left out 4 file(s) named as results of this tool (x_R.jpg, x_T.dng, x_T.png and 1 more)" in out
    assert "left out x.tif: the RAW file x.dng of its stem is that photo" in out
    assert "left out 2 file(s) that are neither camera RAW files nor RGB images (notes.txt, x.xmp)" in out
    assert [j.photo.name for j in remove_reflection.collect_jobs([folder / "x_T.png"])] == ["x_T.png"]  # as a file: yes
    results = tmp_path / "results"
    results.mkdir()
    for name in ("x_T.png", "x_R.jpg"):
        (folder / name).rename(results / name)
    with pytest.raises(UserError, match=r"folder .*results holds no photo: .* other than results of this tool$"):
        remove_reflection.collect_jobs([results])
    card = tmp_path / "card"  # a memory card's copy: the photos sit in subfolders
    for sub in ("DCIM/100CANON", "DCIM/101CANON"):
        (card / sub).mkdir(parents=True)
    with pytest.raises(UserError, match=r"card/DCIM holds no photo: .*; subfolders are not searched: give them "
                                        r"\(e\.g\. .*card/DCIM/100CANON and 1 more\)$"):
        remove_reflection.collect_jobs([card / "DCIM"])


def run(args, weights, *extra):
    return remove_reflection.main([*map(str, args), "--checkpoint", str(weights), "--gpu_ids", "-1", *extra])


def no_inference(monkeypatch):
    """Fail the test if the network is even loaded: the checks must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("the network was loaded before the input was checked")

    monkeypatch.setattr(remove_reflection, "load_network", refuse)


def test_photos_sharing_a_name_do_not_overwrite_each_other(tmp_path, weights, capsys):
    pytest.importorskip("pidng")
    for folder, seed in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        scene_dng(tmp_path / folder / "x.dng", h=64, w=64, seed=seed)
    scene_dng(tmp_path / "a" / "upper.dng", h=64, w=64, seed=3)
    (tmp_path / "a" / "upper.dng").rename(tmp_path / "a" / "y.DNG")  # the DNG writer insists on ".dng"
    scene_dng(tmp_path / "a" / "y.dng", h=64, w=64, seed=4)  # same stem, other case (and x-2 must stay free)
    scene_dng(tmp_path / "b" / "x-2.dng", h=64, w=64, seed=5)
    out = tmp_path / "out"
    assert run([tmp_path / "a", tmp_path / "b", "-o", out], weights) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["x-2_T.png", "x-3_T.png", "x_T.png", "y-2_T.png", "y_T.png"], names
    printed = capsys.readouterr().out
    assert "share the name x" in printed and "share the name y" in printed
    images = [np.asarray(Image.open(out / n)) for n in names]
    assert all(not np.array_equal(a, b) for i, a in enumerate(images) for b in images[i + 1:])  # five photos


def test_a_raw_files_jpeg_is_looked_up_by_its_stem_only(tmp_path, weights):
    """Unrelated names beside a RAW file (a subfolder named like a JPEG, two JPEGs of another stem) do not stop it;
    two JPEGs of its own stem are an error naming both."""
    pytest.importorskip("pidng")
    cam = scene_dng(tmp_path / "x.dng", h=64, w=64, seed=7)
    (tmp_path / "trip.jpg").mkdir()
    save_jpeg(tmp_path / "a.jpg", render_rgb(cam))
    save_jpeg(tmp_path / "a.jpeg", render_rgb(cam))
    assert run([tmp_path / "x.dng", "-o", tmp_path / "one"], weights) == 0
    assert run([tmp_path, "-o", tmp_path / "all"], weights) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["a-2_T.png", "a_T.png", "x_T.png"]
    save_jpeg(tmp_path / "x.JPG", render_rgb(cam))
    save_jpeg(tmp_path / "x.jpeg", render_rgb(cam))
    for inputs in ([tmp_path / "x.dng"], [tmp_path]):
        with pytest.raises(UserError, match=r"x\.JPG and x\.jpeg are both JPEGs of the stem of x\.dng; keep one"):
            run([*inputs, "-o", tmp_path / "o"], weights)
    assert run([tmp_path / "x.dng", tmp_path / "x.jpeg", "-o", tmp_path / "given"], weights) == 0


def test_existing_results_and_inputs_are_never_overwritten(tmp_path, weights, monkeypatch):
    pytest.importorskip("pidng")
    folder = tmp_path / "in"
    folder.mkdir()
    cam = scene_dng(folder / "p.dng", h=64, w=64, seed=1)
    assert run([folder / "p.dng", "-o", folder], weights) == 0  # -o the input folder: allowed, nothing clashes
    earlier = (folder / "p_T.png").read_bytes()
    with monkeypatch.context() as m:
        no_inference(m)
        with pytest.raises(UserError, match=r"p_T\.png already exist\(s\) in .*pass --overwrite"):
            run([folder / "p.dng", "-o", folder], weights)
        assert (folder / "p_T.png").read_bytes() == earlier
        (tmp_path / "file").write_text("x")
        with pytest.raises(UserError, match=r"-o .*file is a file, not a folder"):
            run([folder / "p.dng", "-o", tmp_path / "file"], weights)
        with pytest.raises(UserError, match=r"p\.dng is given twice"):
            run([folder / "p.dng", folder, "-o", tmp_path / "o2"], weights)
        # an input where a result would go: refused even with --overwrite
        save_jpeg(folder / "p_T.jpg", render_rgb(cam))
        with pytest.raises(UserError, match=r"p_T\.jpg is an input of this run"):
            run([folder / "p.dng", folder / "p_T.jpg", "-o", folder, "--format", "jpg", "--overwrite"], weights)
        (tmp_path / "o3" / "p_T.png").mkdir(parents=True)
        with pytest.raises(UserError, match=r"p_T\.png is a folder where this run would write"):
            run([folder / "p.dng", "-o", tmp_path / "o3", "--overwrite"], weights)
    assert run([folder / "p.dng", "-o", folder, "--overwrite"], weights) == 0  # asked for: replaced


@pytest.mark.parametrize("flags, needle", [
    (["--tile", "100"], "--tile 100 must be 0 (whole image) or a positive multiple of 8"),
    (["--tile", "-512"], "--tile -512"),
    (["--tile", "64", "--tile_overlap", "40"], "--tile_overlap 40 is more than half of --tile 64"),
    (["--tile_overlap", "-2"], "--tile_overlap -2 must be an even number"),
    (["--quality", "0"], "--quality 0 is outside 1..100"),
    (["--quality", "101"], "--quality 101 is outside 1..100"),
])
def test_flags_are_checked_at_parse_time(flags, needle):
    with pytest.raises(UserError) as info:
        remove_reflection.parse_args(["x.dng", "-o", "out", *flags])
    assert needle in str(info.value)


def test_full_disk_stops_the_run_with_one_line(tmp_path, weights, monkeypatch, capsys):
    pytest.importorskip("pidng")
    import errno

    folder = tmp_path / "in"
    folder.mkdir()
    scene_dng(folder / "a.dng", h=64, w=64, seed=1)
    scene_dng(folder / "b.dng", h=64, w=64, seed=2)
    real_save = Image.Image.save

    def full_disk(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(SystemExit) as info:
        run_main_cli(remove_reflection.main, [str(folder), "-o", str(tmp_path / "out"), "--checkpoint", str(weights),
                                              "--gpu_ids", "-1"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot write {tmp_path / 'out' / 'a_T.png'}: No space left on device; free some space "
                   "or write elsewhere"]  # one line; b.dng not attempted: it could not be written either
    assert list((tmp_path / "out").iterdir()) == []  # no torn file, no temporary file


def test_more_hostile_inputs(tmp_path, weights):
    pytest.importorskip("pidng")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "photo.dng").mkdir()  # a folder named like a RAW file
    (tmp_path / "zero.dng").write_bytes(b"")
    cases = [
        ([tmp_path / "empty"], "holds no photo"),
        ([tmp_path / "zero.dng"], "zero.dng"),
    ]
    for inputs, needle in cases:
        proc = subprocess.run([sys.executable, "remove_reflection.py", *map(str, inputs), "-o", str(tmp_path / "o"),
                               "--checkpoint", str(weights), "--gpu_ids", "-1"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert "Traceback" not in proc.stderr and lines[-1].startswith("error: ") and needle in lines[-1], proc.stderr


def test_only_the_first_frame_of_an_animation_or_multi_page_file_is_processed_with_a_note(tmp_path, weights,
                                                                                            capsys):
    from util.image_io import extra_frames, read_photo

    rng = np.random.default_rng(5)
    frames = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:], lossless=True)
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:2])
    frames[0].save(tmp_path / "single.png")
    frames[0].save(tmp_path / "camera.jpg", format="MPO", save_all=True, append_images=frames[1:2])  # + a preview
    names = ("anim.webp", "pages.tif", "single.png", "camera.jpg", "missing.png")
    assert [extra_frames(tmp_path / n) for n in names] == [2, 1, 0, 0, 0]
    for name in ("anim.webp", "pages.tif"):
        assert np.array_equal(read_photo(tmp_path / name)[0], np.asarray(frames[0], np.float32) / 255)
    run([tmp_path / "anim.webp", tmp_path / "pages.tif", tmp_path / "single.png", "-o", tmp_path / "out"], weights)
    out = capsys.readouterr().out
    assert "note: anim.webp holds 3 frames (an animation or pages); only the first is processed" in out
    assert "note: pages.tif holds 2 frames" in out and "single.png holds" not in out
