"""util.files and util.errors: whole-or-nothing writes, file-system errors and worker errors as one line."""

import errno
import os

import pytest
import torch

from util.errors import FileSystemError, UserError, run_cli, user_message
from util.files import atomic_write, link_problem, write_text


def test_atomic_write_replaces_whole_and_keeps_usual_permissions(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two" and sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's owner-only 0600


@pytest.mark.parametrize("code, reason", [
    (errno.ENOSPC, "No space left on device"),
    (errno.EACCES, "Permission denied"),
    (errno.EROFS, "Read-only file system"),
])
def test_file_system_errors_name_the_target_and_leave_nothing(tmp_path, code, reason):
    write_text(tmp_path / "a.txt", "earlier")

    def fails(tmp):
        tmp.write_text("half")
        raise OSError(code, os.strerror(code))

    with pytest.raises(FileSystemError, match=rf"cannot write {tmp_path / 'a.txt'}: {reason}; "):
        atomic_write(tmp_path / "a.txt", fails)
    assert (tmp_path / "a.txt").read_text() == "earlier"  # the older file is intact, no temporary file is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_other_os_errors_keep_their_traceback(tmp_path):
    def fails(tmp):
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError, match="Input/output error"):
        atomic_write(tmp_path / "a.txt", fails)
    assert list(tmp_path.iterdir()) == []


def test_run_cli_turns_file_system_errors_into_one_line(tmp_path, capsys):
    def main(argv):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x"))

    with pytest.raises(SystemExit) as info:
        run_cli(main)
    assert info.value.code == 2
    expected = f"error: {tmp_path / 'x'}: Permission denied; check the permissions of the file and its folder, or write"
    assert capsys.readouterr().err == expected + " elsewhere\n"


def test_checkpoint_save_is_atomic(tmp_path):
    from models.checkpoint import atomic_torch_save

    atomic_torch_save({"w": torch.ones(2)}, tmp_path / "w.pth")
    assert torch.equal(torch.load(tmp_path / "w.pth", weights_only=True)["w"], torch.ones(2))


def test_worker_traceback_becomes_the_original_line():
    wrapped = UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                        "last):\n  File \"x.py\", line 1, in f\nutil.errors.UserError: cannot read image a.png: bad\n")
    assert user_message(wrapped) == "cannot read image a.png: bad"
    assert user_message(UserError("plain")) == "plain"


def test_link_problem(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "ok").symlink_to(tmp_path)
    assert "loops back on itself" in link_problem(tmp_path / "loop")
    assert "gone, which does not exist" in link_problem(tmp_path / "dangling")
    assert link_problem(tmp_path / "ok") is None and link_problem(tmp_path / "absent") is None
