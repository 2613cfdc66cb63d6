"""scripts/tone_check.py: a model's gain split into its global tone change and the rest, on test.py's saved images."""

import numpy as np
import pytest

from scripts import tone_check
from util.errors import UserError
from util.image_io import write_rgb
from util.metrics import psnr


def _scene(seed, h=48, w=64):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.1, 0.7, size=(h, w, 3))


def _u8(x):
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def _write_results(folder, triples):
    images = folder / "images"
    images.mkdir(parents=True)
    for stem, (blended, T, gt) in triples.items():
        for suffix, image in (("_I", blended), ("_T", T), ("_T_gt", gt)):
            write_rgb(images / f"{stem}{suffix}.png", image)


def test_a_pure_gain_is_all_tone_and_a_true_removal_is_separation(tmp_path):
    gt = _scene(0)
    reflection = 0.25 * _scene(1)
    blended = _u8(0.9 * gt + reflection)
    dimmed = _u8(0.85 * (0.9 * gt + reflection))  # what an unseparating network does: a global dimming
    removed = _u8(gt + 0.01 * _scene(2))  # the reflection gone, a trace of error left
    _write_results(tmp_path / "dim", {"a": (blended, dimmed, _u8(gt))})
    _write_results(tmp_path / "sep", {"a": (blended, removed, _u8(gt))})

    dim, sep = (tone_check.check_folder(tmp_path / name)["summary"] for name in ("dim", "sep"))
    assert dim["model"] > dim["do_nothing"]  # dimming gains PSNR ...
    assert abs(dim["separation"]) < 0.05  # ... all of it explained by the global gain
    assert dim["ratio"] == pytest.approx(0.85, abs=0.01)
    assert sep["separation"] > 5  # removing the layer gains far more than its brightness change would
    for s in (dim, sep):  # the oracle is the best any global per-channel gain can do
        assert s["best_gain"] >= s["tone_only"] - 1e-9
        assert s["do_nothing"] == pytest.approx(psnr(_u8(gt), blended))


def test_summary_averages_images_and_keeps_the_worst(tmp_path, capsys):
    gt0, gt1 = _scene(3), _scene(4)
    I0, I1 = _u8(gt0 + 0.2), _u8(gt1 + 0.1)
    _write_results(tmp_path / "r", {"x0": (I0, _u8(gt0 + 0.01), _u8(gt0)),
                                    "x1": (I1, _u8(0.9 * (gt1 + 0.1)), _u8(gt1))})
    (result,) = tone_check.main([str(tmp_path / "r"), "--json", str(tmp_path / "tone.json")])
    rows = result["images"]
    assert set(rows) == {"x0", "x1"}
    assert result["summary"]["model"] == pytest.approx((rows["x0"]["model"] + rows["x1"]["model"]) / 2)
    assert result["summary"]["worst_separation"] == min(r["separation"] for r in rows.values())
    out = capsys.readouterr().out
    assert "| separation (worst) |" in out and str(tmp_path / "r") in out
    assert (tmp_path / "tone.json").is_file()


def test_a_folder_without_ground_truth_is_refused_by_name(tmp_path):
    images = tmp_path / "nogt" / "images"
    images.mkdir(parents=True)
    write_rgb(images / "a_I.png", _u8(_scene(5)))
    write_rgb(images / "a_T.png", _u8(_scene(5)))
    with pytest.raises(UserError, match="nogt.*no complete"):
        tone_check.check_folder(tmp_path / "nogt")


def test_a_tone_curve_is_not_separation_though_a_gain_cannot_explain_it(tmp_path):
    """A network that bends the tone curve (darkens highlights more than shadows) beats a global gain, so the gain
    measure calls part of its gain separation; the curve measure does not, and sees T is a curve of I."""
    gt = _scene(6)
    blended = _u8(0.9 * gt + 0.25 * _scene(7))
    bent = _u8((blended / 255.0) ** 1.6 * 0.95)  # a pointwise curve of the input, nothing removed
    removed = _u8(gt + 0.01 * _scene(8))
    _write_results(tmp_path / "bent", {"a": (blended, bent, _u8(gt))})
    _write_results(tmp_path / "sep", {"a": (blended, removed, _u8(gt))})
    bent_s, sep_s = (tone_check.check_folder(tmp_path / name)["summary"] for name in ("bent", "sep"))
    assert abs(bent_s["separation"]) > 0.3  # the gain measure is fooled by a curve ...
    assert abs(bent_s["beyond_curve"]) < 0.05 and bent_s["curve_fidelity"] > 45  # ... the curve measure is not
    assert sep_s["beyond_curve"] > 3 and sep_s["curve_fidelity"] < 30
    for s in (bent_s, sep_s):  # the oracle curve is at least the oracle gain
        assert s["best_curve"] >= s["best_gain"] - 0.05


def test_curve_image_is_the_least_squares_lookup_table():
    from util.tone import curve_image

    image = _u8(_scene(9))
    lut = np.clip(np.round(255 * (np.arange(256) / 255) ** 0.5), 0, 255).astype(np.uint8)
    assert np.array_equal(curve_image(image, lut[image]), lut[image])  # a curve is recovered exactly
    assert np.array_equal(curve_image(image, image), image)
    noisy = np.clip(image.astype(int) + np.where(np.indices(image.shape)[1] % 2, 3, -3), 0, 255).astype(np.uint8)
    assert np.abs(curve_image(image, noisy).astype(int) - image.astype(int)).mean() < 1  # structure averages out
