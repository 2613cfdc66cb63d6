"""models.evaluation: the one evaluation loop of test.py and training validation (rows, means, worst gain)."""

import math

import numpy as np
import pytest
import torch

from models.evaluation import METRIC_COLUMNS, TONE_COLUMNS, evaluate, mean_metrics
from util.image_io import to_uint8
from util.metrics import psnr


class ShiftModel:
    """Predicts T = I + shift (R = I - T), so each item's metrics are known; ``inference_seconds`` 0.5."""

    def __init__(self, shift: float):
        self.shift, self.inference_seconds = shift, 0.5

    def set_input(self, batch):
        self.input = batch

    def test(self):
        I_rgb = self.input["I_rgb"]
        T_pred_rgb = (I_rgb + self.shift).clamp(0, 1)
        visuals = {"I_rgb": I_rgb, "T_pred_rgb": T_pred_rgb, "R_pred_rgb": (I_rgb - T_pred_rgb).clamp(0, 1)}
        for key in ("T_rgb", "R_rgb"):  # ground truth under the batch's names, as RAWRRModel.test()
            if key in self.input:
                visuals[key] = self.input[key]
        return visuals


def item(seed: int, with_r: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {"stem": [f"img{seed}"], "I_rgb": torch.rand(1, 3, 16, 24, generator=g) * 0.8,
             "T_rgb": torch.rand(1, 3, 16, 24, generator=g)}
    if with_r:
        batch["R_rgb"] = torch.rand(1, 3, 16, 24, generator=g) * 0.2
    return batch


def test_rows_score_the_8_bit_images_and_means_average_them():
    loader = [item(0), item(1, with_r=False), item(2)]
    saved, seen = {}, []

    def save(stem, images):
        saved[stem] = images
        return {kind: f"{stem}_{kind}.png" for kind in images}

    rows, means = evaluate(ShiftModel(0.1), loader, save=save, on_row=lambda n, row: seen.append(n))
    assert seen == [1, 2, 3] and [r["stem"] for r in rows] == ["img0", "img1", "img2"]
    assert list(saved["img0"]) == ["I", "T", "R", "T_gt", "R_gt"] and "R_gt" not in saved["img1"]
    assert rows[0]["images"]["T"] == "img0_T.png" and rows[0]["seconds"] == 0.5
    T_u8 = to_uint8((loader[0]["I_rgb"] + 0.1).clamp(0, 1))
    assert np.array_equal(saved["img0"]["T"], T_u8)
    assert rows[0]["T_psnr"] == psnr(to_uint8(loader[0]["T_rgb"]), T_u8)
    assert rows[0]["gain_psnr"] == rows[0]["T_psnr"] - rows[0]["I_psnr"]
    assert "R_psnr" not in rows[1] and "T_lpips" not in rows[0]  # no R ground truth; no LPIPS model given
    assert means["R_psnr"] == pytest.approx((rows[0]["R_psnr"] + rows[2]["R_psnr"]) / 2)
    assert means["T_psnr"] == pytest.approx(sum(r["T_psnr"] for r in rows) / 3)
    assert means["worst_gain_psnr"] == min(r["gain_psnr"] for r in rows) and means["seconds"] == 0.5


def test_limit_keys_and_rows_kept_when_an_item_fails():
    rows, means = evaluate(ShiftModel(0.0), [item(0), item(1)], limit=1, keys=(*METRIC_COLUMNS, "seconds"))
    assert len(rows) == 1 and "gain_psnr" not in means and "worst_gain_psnr" not in means
    assert means["T_psnr"] == rows[0]["T_psnr"] and means["I_psnr"] == rows[0]["I_psnr"]  # T = I
    kept = []
    broken = item(1)
    del broken["I_rgb"]
    with pytest.raises(KeyError):
        evaluate(ShiftModel(0.0), [item(0), broken], rows=kept)
    assert [r["stem"] for r in kept] == ["img0"]


def test_mean_metrics_worst_gain_ignores_non_finite():
    rows = [{"gain_psnr": 2.0}, {"gain_psnr": math.inf}, {"gain_psnr": -1.0}, {"T_psnr": 5.0}]
    assert mean_metrics(rows, ("gain_psnr",))["worst_gain_psnr"] == -1.0
    assert math.isnan(mean_metrics([{"T_psnr": 5.0}], ("T_psnr", "gain_psnr"))["worst_gain_psnr"])
    assert mean_metrics([], ("T_psnr",)) == {}


class ScaleModel(ShiftModel):
    """Predicts T = I * scale: a pure tone change, no separation."""

    def __init__(self, scale: float):
        super().__init__(0.0)
        self.scale = scale

    def test(self):
        visuals = super().test()
        visuals["T_pred_rgb"] = self.input["I_rgb"] * self.scale
        return visuals


def test_rows_split_the_gain_into_tone_and_separation():
    rows, means = evaluate(ScaleModel(0.8), [item(0), item(1)], keys=(*METRIC_COLUMNS, *TONE_COLUMNS))
    for row in rows:  # T is the input dimmed: the tone explains all of T's PSNR, whatever it is
        assert row["tone_ratio"] == pytest.approx(0.8, abs=0.01)
        assert abs(row["separation_psnr"]) < 0.05 and row["tone_psnr"] == pytest.approx(row["T_psnr"], abs=0.05)
        assert row["separation_psnr"] == row["T_psnr"] - row["tone_psnr"]
        assert abs(row["beyond_curve_psnr"]) < 0.05 and row["curve_fidelity_psnr"] > 40  # a gain is a curve too
    assert means["separation_psnr"] == pytest.approx(sum(r["separation_psnr"] for r in rows) / 2)
    # a model that moves pixels the gain cannot explain (a constant shift on a dim image) has a non-zero separation
    shifted, _ = evaluate(ShiftModel(0.1), [item(0)])
    assert abs(shifted[0]["separation_psnr"]) > 0.05
    # without ground-truth T there is nothing to split
    no_gt = item(2)
    del no_gt["T_rgb"]
    row = evaluate(ScaleModel(0.8), [no_gt])[0][0]
    assert not set(TONE_COLUMNS) & set(row)
