"""architecture.json beside the weights, and the one resolution of --ngf/--num_cab (models/architecture.py)."""

import argparse
import json
from types import SimpleNamespace

import pytest
import torch

from models.architecture import (
    ARCHITECTURE_FILE,
    ARCHITECTURE_FORMAT,
    DEFAULT_NGF,
    DEFAULT_NUM_CAB,
    read_architecture,
    resolve_architecture,
    saved_architecture,
    write_architecture,
)
from models.cr3net import CR3Net
from options.base_options import save_options
from options.test_options import TestOptions
from util.errors import UserError


def train_opt_line(key, value):
    """One line of a train_opt.txt as options.base_options.format_options writes it."""
    return f"{key:>25}: {value!s:<30}\n"


def write_train_opt(folder, **values):
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(train_opt_line(k, v) for k, v in values.items())
    (folder / "train_opt.txt").write_text(f"----------------- Options ---------------\n{lines}"
                                          "----------------- End -------------------\n")


def opt_for(tmp_path, name="run", is_train=False, **flags):
    values = {"ngf": None, "num_cab": None, **flags}
    return SimpleNamespace(checkpoints_dir=str(tmp_path), name=name, epoch="final", is_train=is_train, **values)


def test_write_then_read_round_trip(tmp_path):
    path = write_architecture(tmp_path / "run", 24, 2, "gen_drop")
    assert path == tmp_path / "run" / ARCHITECTURE_FILE
    record = json.loads(path.read_text())
    assert record == {"format": ARCHITECTURE_FORMAT, "generator": "CR3Net", "netG": "gen_drop", "ngf": 24,
                      "num_cab": 2}
    assert read_architecture(tmp_path / "run") == record
    assert read_architecture(tmp_path / "absent") is None
    assert [p.name for p in (tmp_path / "run").iterdir()] == [ARCHITECTURE_FILE]  # no temporary file left


def test_json_comes_before_train_opt_and_flags_before_both(tmp_path):
    folder = tmp_path / "run"
    write_train_opt(folder, ngf=16, num_cab=3)
    write_architecture(folder, 24, 2)
    opt = opt_for(tmp_path)
    assert resolve_architecture(opt) == {"ngf": ARCHITECTURE_FILE, "num_cab": ARCHITECTURE_FILE}
    assert (opt.ngf, opt.num_cab) == (24, 2)
    opt = opt_for(tmp_path, ngf=8)
    assert resolve_architecture(opt) == {"ngf": "flag", "num_cab": ARCHITECTURE_FILE}
    assert (opt.ngf, opt.num_cab) == (8, 2)


def test_only_train_opt_txt_still_gives_the_width(tmp_path):
    write_train_opt(tmp_path / "old", ngf=16, num_cab=3, netG="gen_drop")
    opt = opt_for(tmp_path, name="old")
    assert resolve_architecture(opt) == {"ngf": "train_opt.txt", "num_cab": "train_opt.txt"}
    assert (opt.ngf, opt.num_cab) == (16, 3)


def test_weights_when_evaluating_else_the_released_defaults(tmp_path):
    folder = tmp_path / "upstream"
    folder.mkdir()
    torch.save(CR3Net(ngf=8, num_cab=1).state_dict(), folder / "final_net_G_T.pth")
    opt = opt_for(tmp_path, name="upstream")
    assert resolve_architecture(opt) == {"ngf": "final_net_G_T.pth", "num_cab": "final_net_G_T.pth"}
    assert (opt.ngf, opt.num_cab) == (8, 1)
    # a resumed training run never reads the bare weights (its train state is checked instead)
    opt = opt_for(tmp_path, name="upstream", is_train=True)
    assert resolve_architecture(opt) == {"ngf": "default", "num_cab": "default"}
    assert (opt.ngf, opt.num_cab) == (DEFAULT_NGF, DEFAULT_NUM_CAB) == (64, 8)
    # the weights are read only for what the folder's files leave open
    write_train_opt(folder, ngf=8, num_cab="None")
    assert saved_architecture(folder, folder / "final_net_G_T.pth") == {
        "ngf": (8, "train_opt.txt"), "num_cab": (1, "final_net_G_T.pth")}


@pytest.mark.parametrize("text, message", [
    ("{not json", "cannot read"),
    (json.dumps({"format": 99, "ngf": 8, "num_cab": 1}), "format 99"),
    (json.dumps({"format": ARCHITECTURE_FORMAT, "ngf": "8", "num_cab": 1}), "ngf must be a non-negative integer"),
])
def test_a_bad_architecture_file_is_one_error_naming_it(tmp_path, text, message):
    (tmp_path / ARCHITECTURE_FILE).write_text(text)
    with pytest.raises(UserError, match=message) as err:
        read_architecture(tmp_path)
    assert str(tmp_path / ARCHITECTURE_FILE) in str(err.value)


def test_save_options_writes_the_json_for_training_only(tmp_path):
    opt = argparse.Namespace(checkpoints_dir=str(tmp_path), name="run", phase="train", ngf=16, num_cab=3,
                             netG="gen_drop")
    save_options(opt, argparse.ArgumentParser())
    assert read_architecture(tmp_path / "run")["ngf"] == 16
    assert (tmp_path / "run" / "train_opt.txt").is_file()
    opt = argparse.Namespace(checkpoints_dir=str(tmp_path), name="eval", phase="test", ngf=16, num_cab=3,
                             netG="gen_drop")
    save_options(opt, argparse.ArgumentParser())
    assert not (tmp_path / "eval" / ARCHITECTURE_FILE).exists()


def test_test_options_read_the_json_of_the_checkpoint_folder(tmp_path):
    write_architecture(tmp_path / "run", 12, 2)
    opt = TestOptions().parse(["--checkpoints_dir", str(tmp_path), "--name", "run", "--gpu_ids", "-1"], save=False)
    assert (opt.ngf, opt.num_cab) == (12, 2)
