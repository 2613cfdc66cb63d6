"""Shared pytest fixtures: the repository root on sys.path and the location of ../shared/data."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED_DATA = Path(os.environ.get("CR3NET_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data():
    """Path to ../shared/data; skips the test where that folder is absent (a user's clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: this test reads the project's shared real data")
    return SHARED_DATA
