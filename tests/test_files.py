"""util.files and util.errors: whole-or-nothing writes, file-system errors and worker errors as one line."""

import errno
import os
from pathlib import Path

import pytest
import torch

from util.errors import FileSystemError, UserError, run_cli, unwrap_worker_error
from util.files import (
    atomic_torch_save,
    atomic_write,
    atomic_write_text,
    is_dead_temp,
    link_problem,
    remove_dead_temps,
    stage_file,
)


def test_atomic_write_replaces_whole_and_keeps_usual_permissions(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
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
    atomic_write_text(tmp_path / "a.txt", "earlier")

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
    from models.checkpoint import atomic_torch_save as from_checkpoint

    assert from_checkpoint is atomic_torch_save  # one atomic save, also importable from models.checkpoint
    atomic_torch_save({"w": torch.ones(2)}, tmp_path / "w.pth")
    assert torch.equal(torch.load(tmp_path / "w.pth", weights_only=True)["w"], torch.ones(2))


def test_every_writer_names_its_temporary_files_as_remove_dead_temps_expects(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (seen.append(Path(src)), real_replace(src, dst)))
    atomic_write_text(tmp_path / "index.html", "<p>")
    atomic_write(tmp_path / "a_T.png", lambda tmp: tmp.write_bytes(b"png"))
    atomic_torch_save({"w": torch.ones(1)}, tmp_path / "w.pth")
    assert len(seen) == 3 and all(is_dead_temp(p) for p in seen), seen
    staged = stage_file(tmp_path / "metrics.json", lambda f: f.write(b"{}"))  # as a kill would leave it
    umask = os.umask(0)
    os.umask(umask)
    assert is_dead_temp(staged) and staged.stat().st_mode & 0o777 == 0o666 & ~umask
    assert remove_dead_temps(tmp_path) == [staged]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_T.png", "index.html", "w.pth"]


def test_worker_traceback_becomes_the_original_line():
    wrapped = UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                        "last):\n  File \"x.py\", line 1, in f\nutil.errors.UserError: cannot read image a.png: bad\n")
    assert str(unwrap_worker_error(wrapped)) == "cannot read image a.png: bad"
    assert str(unwrap_worker_error(UserError("plain"))) == "plain"
    full = FileSystemError("Caught FileSystemError in DataLoader worker process 1.\nOriginal Traceback (most recent "
                           "call last):\n  File \"x.py\", line 1, in f\nutil.errors.FileSystemError: cannot write "
                           "a.png: No space left on device; free some space or write elsewhere\n")
    unwrapped = unwrap_worker_error(full)
    assert type(unwrapped) is FileSystemError
    assert str(unwrapped) == "cannot write a.png: No space left on device; free some space or write elsewhere"


def test_link_problem(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "ok").symlink_to(tmp_path)
    assert "loops back on itself" in link_problem(tmp_path / "loop")
    assert "gone, which does not exist" in link_problem(tmp_path / "dangling")
    assert link_problem(tmp_path / "ok") is None and link_problem(tmp_path / "absent") is None


def test_exit_fast_flushes_output_and_keeps_the_status():
    """test.py and remove_reflection.py end with util.errors.exit_fast (os._exit after a flush): text still in
    Python's buffers when it is called reaches a pipe, and the exit status is main's."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    for status in (0, 3):
        code = ("import sys; from util.errors import exit_fast; sys.stdout.write('done, no newline'); "
                f"sys.stderr.write('note'); exit_fast({status})")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo)
        assert (result.returncode, result.stdout, result.stderr) == (status, "done, no newline", "note")


def test_scripts_run_as_files_name_the_command_that_works():
    """`python scripts/x.py` cannot import the project's packages (sys.path[0] is scripts/): each script says to run
    `python -m scripts.x` from the repository root instead of failing with a bare ModuleNotFoundError."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    scripts = sorted(p for p in (repo / "scripts").glob("*.py") if "from __future__" in p.read_text())
    assert len(scripts) >= 10
    for script in scripts:
        result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=repo)
        assert result.returncode == 1, script.name
        assert f"python -m scripts.{script.stem}" in result.stderr and "Traceback" not in result.stderr, script.name


def test_help_states_each_default_once():
    """--help of the three commands: no "(default: None)", "(default: False)" or "(default: )" noise, no help that
    states its default twice, and the plain defaults still shown."""
    import re
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    for command, shown in (("test.py", "(default: 0)"), ("train.py", "(default: 0.0001)"),
                           ("remove_reflection.py", "(default: 95)")):
        result = subprocess.run([sys.executable, command, "--help"], capture_output=True, text=True, cwd=repo)
        assert result.returncode == 0, result.stderr
        text = re.sub(r"\s+", " ", result.stdout)
        for noise in ("(default: None)", "(default: False)", "(default: True)", "(default: )", "(default: [])"):
            assert noise not in text, (command, noise)
        assert not re.search(r"\(default[^()]*\) \(default:", text), command
        assert shown in text, command
