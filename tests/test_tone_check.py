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
