"""scripts/fit_check: trains on the fixed samples only, scores both sets with the tone-curve measure."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models.rawrr_training import RAWRRTrainer
from scripts import fit_check
from tests.test_training import write_photos
from util.errors import UserError


def test_trains_on_the_fixed_samples_only_and_scores_both_sets(tmp_path, monkeypatch, capsys):
    photos = write_photos(tmp_path / "photos")
    scored, trained = [], []
    real_score, real_step = fit_check.score, RAWRRTrainer.optimize_parameters

    def recording_score(trainer, items):
        scored.append(items)
        return real_score(trainer, items)

    def recording_step(self, iteration):
        trained.append(self.input["I_rgb"].clone())
        return real_step(self, iteration)

    monkeypatch.setattr(fit_check, "score", recording_score)
    monkeypatch.setattr(RAWRRTrainer, "optimize_parameters", recording_step)
    history = fit_check.main(["--num_fixed", "3", "--num_unseen", "2", "--iters", "3", "--eval_every", "2",
                              "--init_from", "none", "--json", str(tmp_path / "fit.json"),
                              "--dataroot", str(photos), "--holdout_every", "0", "--ngf", "8", "--num_cab", "1",
                              "--crop_size", "64", "--batch_size", "2", "--precision", "fp32", "--gpu_ids", "-1"])
    assert [row["iteration"] for row in history] == [0, 2, 3]
    fixed, unseen = scored[0], scored[1]
    assert len(fixed) == 3 and len(unseen) == 2 and all(items is fixed for items in scored[::2])
    assert len(trained) == 3 and all(batch.shape[0] == 2 for batch in trained)
    order = [[next(i for i, item in enumerate(fixed) if torch.equal(item["I_rgb"], image)) for image in batch]
             for batch in trained]  # StopIteration here: a trained sample that is not a fixed one
    assert order == [[0, 1], [2, 0], [1, 2]]  # cycled in a fixed order
    assert not any(torch.equal(u["I_rgb"], f["I_rgb"]) for u in unseen for f in fixed)
    assert json.loads((tmp_path / "fit.json").read_text())["history"] == json.loads(json.dumps(history))
    out = capsys.readouterr().out
    assert "3 fixed and 2 unseen samples of 64 px; ngf 8, num_cab 1, from train.py's init" in out
    assert out.count("  it ") == 3 and "best tone curve (oracle)" in out


def test_the_same_flags_give_the_same_scores(tmp_path):
    """--seed fixes the networks' initial weights, as in train.py: a rerun gives the same figures."""
    photos = write_photos(tmp_path / "photos")
    flags = ["--num_fixed", "2", "--num_unseen", "2", "--iters", "2", "--eval_every", "1", "--init_from", "none",
             "--dataroot", str(photos), "--holdout_every", "0", "--ngf", "8", "--num_cab", "1", "--crop_size", "64",
             "--batch_size", "2", "--precision", "fp32", "--gpu_ids", "-1"]
    first, second = (fit_check.main(flags) for _ in range(2))
    assert [row["fixed"] | row["unseen"] for row in first] == [row["fixed"] | row["unseen"] for row in second]


def fake_trainer(predict):
    """What score() uses of a RAWRRTrainer, with a generator whose T is ``predict(input)``."""
    trainer = SimpleNamespace(device=torch.device("cpu"), precision="fp32", input={})

    class Net(torch.nn.Module):
        def forward(self, I_rgb, I_raw):
            return (I_rgb, predict(trainer.input)), (I_raw, I_raw)

    trainer.netG = Net()
    trainer.set_input = lambda batch: trainer.input.update(batch)
    return trainer


def test_score_tells_a_removal_from_a_tone_curve():
    rng = np.random.default_rng(0)
    items = []
    for _ in range(3):
        T = torch.from_numpy(rng.uniform(0.1, 0.7, (3, 32, 32))).float()
        R = torch.zeros(3, 32, 32)
        R[:, 8:20, 5:25] = 0.25  # a reflection: light added over part of the image
        items.append({"I_rgb": T + R, "T_rgb": T, "I_raw": torch.zeros(4, 16, 16)})
    removal = fit_check.score(fake_trainer(lambda x: x["T_rgb"]), items)
    assert removal["gain"] > 15 and removal["beyond_curve"] > 5 and removal["beyond_curve_worst"] > 5
    curve = fit_check.score(fake_trainer(lambda x: x["I_rgb"] ** 1.3 * 0.9), items)
    assert abs(curve["beyond_curve"]) < 0.05 and curve["gain"] != 0
    nothing = fit_check.score(fake_trainer(lambda x: x["I_rgb"]), items)
    assert nothing["gain"] == 0 and nothing["best_curve_gain"] > 0


def test_counts_must_be_positive():
    with pytest.raises(UserError, match="--iters 0 must be at least 1"):
        fit_check.parse_args(["--iters", "0"])
