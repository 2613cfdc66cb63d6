"""Shared pytest fixtures: the location of ../shared/data. (The repository root is on sys.path through pyproject.toml's
``pythonpath``.)"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CR3NET_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data():
    """Path to ../shared/data; skips the test where that folder is absent (a user's clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: this test reads the project's shared real data")
    return SHARED_DATA
