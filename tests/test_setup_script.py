"""scripts/setup.sh, which test.sh and the test command source: a disk too small for a new environment is named
before pip starts writing gigabytes."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_setup_stops_before_creating_a_venv_on_a_full_disk(tmp_path):
    venv = tmp_path / "not" / "yet" / "venv"
    env = dict(os.environ, CR3NET_VENV=str(venv), CR3NET_MIN_FREE_GB="1000000")
    proc = subprocess.run(
        ["bash", "-c", "source scripts/setup.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert str(venv) in proc.stderr and "MB free" in proc.stderr and "CR3NET_VENV" in proc.stderr
    assert not (tmp_path / "not").exists()  # nothing created, nothing half-installed


def test_setup_does_not_check_the_disk_for_an_existing_environment(tmp_path):
    # an existing, complete environment is not checked again: the suite's own .venv runs setup in about a second
    proc = subprocess.run(
        ["bash", "-c", "source scripts/setup.sh requirements-dev.txt && python -c 'import sys; print(sys.prefix)'"],
        cwd=ROOT, env=dict(os.environ, CR3NET_MIN_FREE_GB="1000000"), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "MB free" not in proc.stderr
