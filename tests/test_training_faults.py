"""Nothing silently wrong, nothing silently lost (issue #13, training): checkpoint sets of one iteration even when a
save is killed, temporary files of dead saves removed, no iteration logged twice after a resume, one-line errors for a
bad file read in a DataLoader worker, for impossible flags and for a full disk."""

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train as train_script
from models.checkpoint import atomic_torch_save, load_state_dict_file
from models.checkpoint_sets import (
    CheckpointWriteError,
    marker_path,
    pending_labels,
    repair_pending_sets,
    set_paths,
    write_set,
)
from models.rawrr_training import RAWRRTrainer
from options.train_options import TrainOptions
from tests.test_train_dataset import make_real
from tests.test_training import make_trainer, train_args, write_photos
from tests.tiny_data import make_test_set
from util.errors import UserError, run_cli, unwrap_worker_error
from util.files import is_dead_temp, remove_dead_temps, stage_file
from util.visualizer import Visualizer

ROOT = Path(__file__).resolve().parents[1]
KILL_TIMEOUT_SECONDS = 240
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("faults") / "photos")


def set_state(exp: Path, label: str) -> dict:
    """The train state of ``label``; asserts that its bare copies hold exactly its G and D."""
    paths = set_paths(exp, label)
    state = torch.load(paths["train_state"], weights_only=True)
    for kind in ("net_G_T", "net_D"):
        on_disk = load_state_dict_file(paths[kind])
        assert on_disk.keys() == state[kind].keys(), kind
        assert all(torch.equal(on_disk[k], state[kind][k]) for k in on_disk), f"{label}_{kind} is not the state's"
    return state


def loss_iterations(exp: Path) -> list[int]:
    return [int(line.split()[1].rstrip(":")) for line in (exp / "loss_log.txt").read_text().splitlines()
            if line.startswith("iteration ")]


def error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ 1. sets of one iteration
def test_set_commit_renames_the_train_state_first(photos, tmp_path, monkeypatch):
    trainer, _ = make_trainer(photos, tmp_path)
    renames = []
    real_replace = os.replace

    def recording(src, dst):
        renames.append((Path(dst).name, marker_path(tmp_path / "unit", "latest").is_file()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording)
    paths = trainer.save("latest", {"iteration": 0, "epoch": 1, "epoch_step": 0})
    assert renames == [("latest_train_state.pth", True), ("latest_net_G_T.pth", True), ("latest_net_D.pth", True)]
    assert not pending_labels(paths["train_state"].parent) and not list(paths["train_state"].parent.glob(".*"))
    set_state(tmp_path / "unit", "latest")
    g = torch.load(paths["net_G_T"], weights_only=True)  # upstream's format: a bare state_dict, nothing else
    assert g.keys() == trainer.netG.state_dict().keys()


def test_a_kill_while_staging_leaves_the_previous_set(photos, tmp_path, monkeypatch):
    trainer, batch = make_trainer(photos, tmp_path)
    exp = tmp_path / "unit"
    trainer.save("latest", {"iteration": 0, "epoch": 1, "epoch_step": 0})
    trainer.set_input(batch)
    trainer.optimize_parameters(1)
    real_save = torch.save
    calls = {"n": 0}

    def killed_on_third(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the train state, staged last
            raise KeyboardInterrupt
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", killed_on_third)
    with pytest.raises(KeyboardInterrupt):
        trainer.save("latest", {"iteration": 1, "epoch": 1, "epoch_step": 1})
    monkeypatch.setattr(torch, "save", real_save)
    assert set_state(exp, "latest")["progress"]["iteration"] == 0
    assert not list(exp.glob(".*"))  # neither temporary files nor a marker


def test_resume_repairs_a_split_set_by_content(photos, tmp_path):
    """A bare copy that differs from its train state (a set written by an older version, cut short) is rewritten."""
    trainer, batch = make_trainer(photos, tmp_path)
    exp = tmp_path / "unit"
    paths = trainer.save("latest", {"iteration": 0, "epoch": 1, "epoch_step": 0})
    trainer.set_input(batch)
    trainer.optimize_parameters(1)
    atomic_torch_save(trainer.netG.state_dict(), paths["net_G_T"])  # G of iteration 1 beside the state of 0
    fresh, _ = make_trainer(photos, tmp_path)
    fresh.load("latest")
    assert fresh.repaired == []  # only asked for by train.py's rank 0
    fresh.load("latest", repair=True)
    assert fresh.repaired == [paths["net_G_T"]]
    set_state(exp, "latest")


def test_interrupted_commit_without_a_train_state_leaves_the_old_files(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    old = {"w": torch.ones(2)}
    atomic_torch_save(old, exp / "latest_net_G_T.pth")
    marker_path(exp, "latest").write_text("latest\n")  # killed before the train state's rename
    assert pending_labels(exp) == ["latest"]
    assert repair_pending_sets(exp) == []
    assert not pending_labels(exp) and torch.equal(torch.load(exp / "latest_net_G_T.pth")["w"], old["w"])


KILL_SCRIPT = """
import os, sys
import torch
torch.set_num_threads(1)
real_replace, count = os.replace, [0]
def replace(src, dst, *args, **kwargs):
    if os.path.basename(str(dst)) == "latest_net_G_T.pth":
        count[0] += 1
        if count[0] == 2:  # the save of 'latest' at iteration 4, its train state already renamed: die here
            os._exit(137)
    return real_replace(src, dst, *args, **kwargs)
os.replace = replace
import train
from util.errors import run_cli
run_cli(train.main, sys.argv[1:])
"""


def test_kill_between_renames_is_repaired_at_the_next_start(photos, tmp_path, capsys):
    """A process killed (os._exit, no clean-up) after the train state's rename and before the bare copies': the next
    start deletes the temporary files, completes the set from its train state and resumes where it was."""
    args = train_args(photos, tmp_path, "killed", "--n_iters", "4", "--save_latest_freq", "2", "--display_freq", "0")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=KILL_TIMEOUT_SECONDS)
    assert done.returncode == 137, done.stdout[-2000:] + done.stderr[-2000:]
    exp = tmp_path / "killed"
    state = torch.load(exp / "latest_train_state.pth", weights_only=True)
    assert state["progress"]["iteration"] == 4
    g = load_state_dict_file(exp / "latest_net_G_T.pth")
    assert any(not torch.equal(g[k], state["net_G_T"][k]) for k in g)  # really split: G still of iteration 2
    assert pending_labels(exp) == ["latest"]
    temps = sorted(p.name for p in exp.iterdir() if is_dead_temp(p))
    assert len(temps) == 2 and all(t.startswith((".latest_net_G_T.pth.", ".latest_net_D.pth.")) for t in temps)
    decoys = [".notes.abcdefgh.tmp", "keep.tmp", ".latest_net_G_T.pth.tmp", ".latest_net_G_T.pth.ABCDEFGH.tmp",
              "latest_net_G_T.pth.abcdefgh.tmp"]
    for name in decoys:
        (exp / name).write_text("not ours")
    (exp / ".x.pth.abcdefgh.tmp").mkdir()
    capsys.readouterr()

    result = train_script.main(args + ["--continue_train"])
    out = capsys.readouterr().out
    assert "deleted 2 temporary file(s)" in out
    assert ("checkpoint 'latest' was interrupted while being saved: latest_net_G_T.pth, latest_net_D.pth rewritten "
            "from latest_train_state.pth (iteration 4)") in out
    assert result["iteration"] == 4  # nothing lost: the committed train state of iteration 4 is where it goes on
    assert not pending_labels(exp) and not [p for p in exp.iterdir() if is_dead_temp(p) and p.is_file()]
    assert all((exp / name).is_file() for name in decoys) and (exp / ".x.pth.abcdefgh.tmp").is_dir()
    latest = set_state(exp, "latest")
    assert latest["progress"]["iteration"] == 4
    final = load_state_dict_file(exp / "final_net_G_T.pth")
    assert all(torch.equal(final[k], latest["net_G_T"][k]) for k in final)
    assert loss_iterations(exp) == [1, 2, 3, 4]


def test_second_ctrl_c_during_a_save_finishes_that_set(photos, tmp_path, monkeypatch, capsys):
    original = RAWRRTrainer.optimize_parameters
    real_save = torch.save
    sent = {"first": False, "second": False}

    def first_interrupt(self, iteration):
        out = original(self, iteration)
        if iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)  # stop after this iteration (whose 'latest' save is due)
            sent["first"] = True
        return out

    def second_interrupt_while_saving(obj, f, *args, **kwargs):
        if sent["first"] and not sent["second"]:
            sent["second"] = True
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again, while the first file of the set is being written
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(RAWRRTrainer, "optimize_parameters", first_interrupt)
    monkeypatch.setattr(torch, "save", second_interrupt_while_saving)
    with pytest.raises(SystemExit) as stopped:
        train_script.main(train_args(photos, tmp_path, "abort", "--n_iters", "6", "--save_latest_freq", "2"))
    assert stopped.value.code == train_script.INTERRUPTED_EXIT_CODE and sent["second"]
    exp = tmp_path / "abort"
    assert set_state(exp, "latest")["progress"]["iteration"] == 2
    assert not list(exp.glob(".*"))
    out = capsys.readouterr().out
    assert f"aborted at iteration 2: every checkpoint in {exp} is complete, 'latest' holds iteration 2" in out


# ------------------------------------------------------------------------------------------ 2. temporary files
def test_dead_temp_names_are_exactly_ours(tmp_path, monkeypatch):
    staged = stage_file(tmp_path / "latest_net_D.pth", lambda f: f.write(b"x"))
    assert is_dead_temp(staged)
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (seen.append(Path(src)), real_replace(src, dst)))
    atomic_torch_save({"w": torch.zeros(1)}, tmp_path / "final_net_G_T.pth")  # the other writer of checkpoints
    assert len(seen) == 1 and is_dead_temp(seen[0])
    keep = ["latest_net_D.pth", ".latest.saving", ".loss_log.txt.abcdefgh", ".notes.abcdefgh.tmp", "a.tmp",
            ".latest_net_D.pth.abc.tmp"]
    for name in keep:
        (tmp_path / name).write_text("")
    dead = tmp_path / ".loss_log.txt.k2_9zzab.tmp"
    dead.write_text("")
    assert sorted(remove_dead_temps(tmp_path)) == sorted([staged, dead])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*keep, "final_net_G_T.pth"])
    assert remove_dead_temps(tmp_path / "missing") == []


# ------------------------------------------------------------------------------------------ 3. logs after a resume
def test_resumed_iterations_are_logged_once(photos, tmp_path, capsys):
    val = make_test_set(tmp_path / "val", n=1, h=64, w=64)
    args = train_args(photos, tmp_path, "logs", "--n_iters", "4", "--save_latest_freq", "2", "--save_by_iter",
                      "--val_dataroot", str(val), "--val_resize", "none", "--val_freq", "1")
    train_script.main(args)
    exp = tmp_path / "logs"
    assert loss_iterations(exp) == [1, 2, 3, 4]
    capsys.readouterr()
    # as after a kill at iteration 4 whose last checkpoint was iteration 2: iterations 3 and 4 are redone
    train_script.main(args + ["--continue_train", "--epoch", "iter_2"])
    assert "dropped their 2 line(s) of loss_log.txt and 2 row(s) of val_log.csv" in capsys.readouterr().out
    log = (exp / "loss_log.txt").read_text()
    assert loss_iterations(exp) == [1, 2, 3, 4] and log.count("================ training loss") == 2
    rows = (exp / "val_log.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,") and [int(r.split(",")[0]) for r in rows[1:]] == [1, 2, 3, 4]


# ------------------------------------------------------------------------------------------ 4. DataLoader workers
def test_bad_file_in_a_worker_is_one_line(tmp_path, capsys):
    root = tmp_path / "real"
    make_real(root, size=(64, 64))
    for raw in (root / "real_I_raw").iterdir():
        raw.write_bytes(b"not a PNG")
    args = train_args(root, tmp_path, "worker", "--real_ratio", "1", "--n_iters", "2", "--num_threads", "1")
    with pytest.raises(UserError) as err:
        train_script.main(args)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"cannot read image {root / 'real_I_raw'}")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        run_cli(train_script.main, args)
    lines = error_lines(capsys)
    assert stopped.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: cannot read image")


def test_unwrap_worker_error_keeps_other_errors():
    plain = UserError("--lr nan: must be a finite number > 0")
    assert unwrap_worker_error(plain) is plain
    wrapped = UserError("Caught UserError in DataLoader worker process 3.\nOriginal Traceback (most recent call "
                        'last):\n  File "x.py", line 1, in f\nutil.errors.UserError: cannot read image a.png: bad\n')
    assert str(unwrap_worker_error(wrapped)) == "cannot read image a.png: bad"


# ------------------------------------------------------------------------------------------ 5. flags
BAD_FLAGS = [
    ("--batch_size", "0"), ("--batch_size", "-1"), ("--lr", "nan"), ("--lr", "-0.0001"), ("--lr", "inf"),
    ("--beta1", "1"), ("--beta2", "-0.1"), ("--beta2", "nan"), ("--n_iters", "-1"), ("--n_epochs", "-2"),
    ("--save_latest_freq", "-1"), ("--print_freq", "-1"), ("--val_freq", "-5"), ("--max_grad_norm", "-1"),
    ("--max_grad_norm", "nan"), ("--lambda_gan", "-0.01"), ("--lambda_vgg", "nan"), ("--lambda_mse_T", "inf"),
    ("--crop_size", "60"), ("--crop_size", "0"), ("--crop_size", "-8"), ("--real_ratio", "1.5"),
    ("--real_ratio", "nan"), ("--samples_per_epoch", "0"), ("--num_threads", "-1"), ("--ndf", "0"),
    ("--n_layers_D", "0"), ("--ngf", "0"), ("--num_cab", "0"), ("--display_freq", "-1"), ("--save_epoch_freq", "-1"),
]


@pytest.mark.parametrize(("flag", "value"), BAD_FLAGS)
def test_impossible_flags_are_refused_at_parse_time(photos, tmp_path, flag, value):
    args = train_args(photos, tmp_path, "flags")
    args = [a for i, a in enumerate(args) if a != flag and (i == 0 or args[i - 1] != flag)] + [flag, value]
    with pytest.raises(UserError, match=rf"^{flag} \S+(: must be | is )") as err:  # train or base options
        TrainOptions().parse(args, save=False)
    assert "\n" not in str(err.value)


def test_flag_errors_through_the_command_line(photos, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_cli(train_script.main, train_args(photos, tmp_path, "flags", "--lr", "nan"))
    assert stopped.value.code == 2 and error_lines(capsys) == ["error: --lr nan: must be a finite number > 0"]
    assert not (tmp_path / "flags").exists()  # refused before anything is written
    with pytest.raises(UserError, match="nothing to train"):
        TrainOptions().parse(train_args(photos, tmp_path, "flags", "--n_epochs", "0"), save=False)
    for ok in (["--lr", "1e-3", "--beta1", "0", "--max_grad_norm", "0", "--lambda_gan", "0", "--real_ratio", "1"],
               ["--n_epochs", "0", "--n_iters", "3", "--print_freq", "0", "--save_latest_freq", "0"]):
        TrainOptions().parse(train_args(photos, tmp_path, "flags", *ok), save=False)


# ------------------------------------------------------------------------------------------ 6. full disk
def test_disk_full_during_a_checkpoint_keeps_the_previous_one(photos, tmp_path, monkeypatch, capsys):
    real_save = torch.save
    calls = {"n": 0}

    def disk_full_on_fourth(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # the first file of the second 'latest' (iteration 4)
            f.write(b"PK\x03\x04 some bytes")
            raise ENOSPC
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_on_fourth)
    with pytest.raises(SystemExit) as stopped:
        run_cli(train_script.main, train_args(photos, tmp_path, "full", "--n_iters", "6", "--save_latest_freq", "2"))
    exp = tmp_path / "full"
    assert stopped.value.code == 2
    assert error_lines(capsys) == [f"error: cannot write checkpoint {exp / 'latest_net_G_T.pth'}: No space left on "
                                   "device; the previous 'latest' checkpoint is unchanged (free disk space or fix "
                                   "the folder's permissions)"]
    assert set_state(exp, "latest")["progress"]["iteration"] == 2
    assert not list(exp.glob(".*")) and not (exp / "final_net_G_T.pth").exists()


def test_disk_full_while_logging_names_the_log(photos, tmp_path, monkeypatch, capsys):
    original = Visualizer.plot_losses

    def disk_full_at_three(self, iteration, losses):
        if iteration == 3:
            raise ENOSPC  # as a write() to an open file: no file name in the error
        original(self, iteration, losses)

    monkeypatch.setattr(Visualizer, "plot_losses", disk_full_at_three)
    with pytest.raises(SystemExit) as stopped:
        run_cli(train_script.main, train_args(photos, tmp_path, "log", "--n_iters", "6", "--save_latest_freq", "2"))
    exp = tmp_path / "log"
    assert stopped.value.code == 2
    assert error_lines(capsys) == [f"error: cannot write {exp / 'loss_log.txt'}: No space left on device; every "
                                   f"checkpoint in {exp} is complete, 'latest' holds iteration 2: free disk space "
                                   "(or fix permissions), then resume with --continue_train"]
    assert set_state(exp, "latest")["progress"]["iteration"] == 2


def test_write_set_errors_name_the_file(tmp_path, monkeypatch):
    state = {"net_G_T": {"w": torch.zeros(1)}, "net_D": {"w": torch.ones(1)}, "progress": {"iteration": 1}}
    write_set(tmp_path, "latest", state)
    real_replace = os.replace

    def no_permission(src, dst):
        if Path(dst).name == "latest_net_D.pth":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", no_permission)
    newer = {**state, "net_G_T": {"w": torch.full((1,), 2.0)}, "net_D": {"w": torch.full((1,), 3.0)}}
    with pytest.raises(CheckpointWriteError, match=r"latest_net_D\.pth: Permission denied; latest_train_state\.pth "
                       r"is new and the next start of train\.py completes the set 'latest' from it"):
        write_set(tmp_path, "latest", newer)
    monkeypatch.setattr(os, "replace", real_replace)
    assert pending_labels(tmp_path) == ["latest"] and not [p for p in tmp_path.iterdir() if is_dead_temp(p)]
    assert repair_pending_sets(tmp_path)
    assert np.array_equal(torch.load(tmp_path / "latest_net_D.pth")["w"].numpy(), [3.0])


def test_rgb_only_validation_set_is_named_with_trainings_advice(photos, tmp_path):
    """An RGB-only --val_dataroot: refused under sensor training with train.py's own way out (test.py's advice,
    --raw_source rgb, would change what the network trains on); accepted by the RGB-only twin."""
    import shutil

    from training.validation import Validator

    val = make_test_set(tmp_path / "val", n=1, h=64, w=64)
    for prefix in ("testB", "testA1", "testA2"):
        shutil.rmtree(val / f"{prefix}_raw")
    opt = TrainOptions().parse(train_args(photos, tmp_path, "rgbval", "--val_dataroot", str(val)), save=False)
    with pytest.raises(UserError, match=r"val is an RGB-only set .*training's --raw_source \(sensor\).*make_rgb_only"):
        Validator(opt)
    opt = TrainOptions().parse(train_args(photos, tmp_path, "rgbval", "--val_dataroot", str(val), "--raw_source",
                                          "rgb"), save=False)
    assert [name for name, _ in Validator(opt).sets] == ["val"]
