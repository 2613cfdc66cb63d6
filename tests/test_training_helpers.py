"""train.py's helpers in training/: the resumable sampler, the progress line, Ctrl-C handling, val_log.csv trimming,
failed writes as one line."""

import errno
import signal

import pytest
import torch

from training.distributed import any_rank, state_digest
from training.interrupts import GracefulStop
from training.loading import ResumableSampler, loader_seed
from training.progress import ProgressMeter, due, format_seconds
from training.validation import VAL_COLUMNS, drop_val_rows_after, upgrade_val_log
from training.write_errors import write_errors_as_one_line
from util.errors import UserError


def test_sampler_starts_mid_epoch_with_the_same_permutation():
    data = list(range(10))
    whole = ResumableSampler(data, num_replicas=1, rank=0, seed=3)
    whole.set_epoch(2)
    order = list(whole)
    assert sorted(order) == data and len(whole) == 10
    resumed = ResumableSampler(data, num_replicas=1, rank=0, seed=3)
    resumed.set_epoch(2)
    resumed.set_start(4)
    resumed.record = []
    assert list(resumed) == order[4:] and len(resumed) == 6 and resumed.record == order[4:]
    resumed.set_epoch(3)
    resumed.set_start(0)
    assert list(resumed) != order  # another epoch, another permutation


def test_sampler_shards_cover_the_epoch_once():
    shards = []
    for rank in range(2):
        sampler = ResumableSampler(list(range(8)), num_replicas=2, rank=rank, seed=0)
        sampler.set_epoch(1)
        shards.append(list(sampler))
    assert sorted(shards[0] + shards[1]) == list(range(8))
    assert loader_seed(0, 0, 1) != loader_seed(0, 1, 1) and loader_seed(0, 0, 1) == loader_seed(0, 0, 1)


def test_progress_meter_line_and_window():
    meter = ProgressMeter(n_iters=10, samples_per_iteration=4)
    meter.add({"G": 1.0, "real_fraction": 0.5})
    meter.add({"G": 3.0, "real_fraction": 1.0})
    line, means = meter.report(iteration=2, epoch=1, epoch_step=2, iters_per_epoch=5, lr=1e-4)
    assert means == {"G": 2.0, "real_fraction": 0.75}
    assert line.startswith("iter 2/10 | epoch 1 (2/5) | G 2 | real 0.75 | lr 0.0001 | ") and "ETA " in line
    assert meter.count == 0 and meter.sums == {}  # a new window
    assert (due(4, 2), due(3, 2), due(4, 0)) == (True, False, False)
    assert [format_seconds(s) for s in (65, 7384, 93784)] == ["1m05s", "2h03m04s", "1d02h03m"]


def test_second_interrupt_waits_for_the_deferred_block():
    with GracefulStop() as stop:
        stop._handler(signal.SIGINT, None)
        assert stop.requested and not stop.aborted
        with pytest.raises(KeyboardInterrupt):
            with stop.deferred():
                stop._handler(signal.SIGINT, None)  # a second Ctrl-C while a checkpoint is written
                assert stop.aborted  # ... waits for the block's end
        with pytest.raises(KeyboardInterrupt):
            stop._handler(signal.SIGINT, None)  # outside a deferred block: at once
    assert signal.getsignal(signal.SIGINT) is not stop._handler


def test_drop_val_rows_after(tmp_path):
    path = tmp_path / "val_log.csv"
    assert drop_val_rows_after(path, 3) == 0
    header = ",".join(VAL_COLUMNS) + "\n"
    path.write_text(header + "2,1,val,2\n4,1,val,2\n4,1,other,2\n")
    assert drop_val_rows_after(path, 3) == 2 and path.read_text() == header + "2,1,val,2\n"


def test_an_older_val_log_gains_the_new_columns_in_place(tmp_path):
    import csv

    path = tmp_path / "val_log.csv"
    curve = ("beyond_curve_psnr", "curve_fidelity_psnr")
    old = [c for c in VAL_COLUMNS if c not in ("tone_psnr", "separation_psnr", "tone_ratio", *curve)]
    path.write_text(",".join(old) + "\n" + ",".join(str(i) for i in range(len(old))) + "\n")
    assert upgrade_val_log(path) and not upgrade_val_log(path)  # the second time: already current
    rows = list(csv.DictReader(open(path, newline="")))
    assert tuple(rows[0]) == VAL_COLUMNS and rows[0]["worst_gain_psnr"] == str(len(old) - 1)
    assert rows[0]["iteration"] == "0" and rows[0]["separation_psnr"] == "" and rows[0]["beyond_curve_psnr"] == ""
    with_tone = [c for c in VAL_COLUMNS if c not in curve]  # the version before the curve columns
    path.write_text(",".join(with_tone) + "\n" + ",".join(str(i) for i in range(len(with_tone))) + "\n")
    assert upgrade_val_log(path)
    rows = list(csv.DictReader(open(path, newline="")))
    assert rows[0]["tone_ratio"] == str(len(with_tone) - 1) and rows[0]["curve_fidelity_psnr"] == ""
    (tmp_path / "other.csv").write_text("iteration,loss\n1,2\n")
    with pytest.raises(UserError, match=r"other\.csv has columns iteration, loss"):
        upgrade_val_log(tmp_path / "other.csv")


def test_failed_write_is_one_line_naming_what_is_intact(tmp_path):
    with pytest.raises(UserError, match=r"cannot write .*log\.txt: No space left on device; all intact: free disk"):
        with write_errors_as_one_line(tmp_path / "log.txt", lambda: "all intact"):
            raise OSError(errno.ENOSPC, "No space left on device")
    with write_errors_as_one_line(tmp_path, "unused"):
        pass


def test_any_rank_and_state_digest_on_one_process():
    assert any_rank(True, 1) and not any_rank(False, 1)
    net = torch.nn.Linear(2, 1)
    assert state_digest(net) == state_digest(net) and len(state_digest(net)) == 64
