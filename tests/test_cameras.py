"""data.cameras: the upstream camera table and per-image / per-dataset profile resolution with its errors."""

import json

import pytest

from data.cameras import CAMERA_PROFILES, DEFAULT_PROFILE, CameraProfile, resolve_profile
from util.errors import UserError


def test_upstream_camera_table():
    table = {name: (p.cfa, p.black, p.white) for name, p in CAMERA_PROFILES.items()}
    assert table == {
        "default": ("RGGB", 400, 16383),
        "huawei_bggr": ("BGGR", 256, 4095),
        "huawei_grbg": ("GRBG", 256, 4095),
        "nikon_d90": ("GBRG", 0, 4095),
        "honor": ("RGGB", 64, 1023),
    }
    assert DEFAULT_PROFILE is CAMERA_PROFILES["default"]
    with pytest.raises(ValueError):
        CameraProfile("bad", "RGBG", 0, 1)
    with pytest.raises(ValueError):
        CameraProfile("bad", "RGGB", 10, 10)


def write(path, content):
    path.write_text(content if isinstance(content, str) else json.dumps(content))


def test_precedence(tmp_path):
    raw_dir = tmp_path / "testB_raw"
    raw_dir.mkdir()
    raw = raw_dir / "x.png"
    other = raw_dir / "y.png"
    assert resolve_profile(raw, tmp_path) is DEFAULT_PROFILE
    assert resolve_profile(raw) is DEFAULT_PROFILE
    write(tmp_path / "camera.json", {"camera": "honor"})
    assert resolve_profile(raw, tmp_path).name == "honor"
    assert resolve_profile(raw) is DEFAULT_PROFILE  # dataset file needs the dataroot
    write(raw_dir / "x.json", {"camera": "nikon_d90"})
    assert resolve_profile(raw, tmp_path).name == "nikon_d90"  # per-image file wins
    assert resolve_profile(other, tmp_path).name == "honor"


def test_explicit_levels(tmp_path):
    raw = tmp_path / "x.tiff"
    write(tmp_path / "x.json", {"cfa": "gbrg", "black": [10, 20, 30, 40], "white": 1023})
    p = resolve_profile(raw)
    assert (p.cfa, p.black, p.white) == ("GBRG", (10.0, 20.0, 30.0, 40.0), 1023.0)
    write(tmp_path / "x.json", {"cfa": "BGGR", "black": 64, "white": 4095})
    p = resolve_profile(raw)
    assert (p.cfa, p.black, p.white) == ("BGGR", 64.0, 4095.0)


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"camera": "canon"}, "default, huawei_bggr, huawei_grbg, nikon_d90, honor"),
        ({"cfa": "RGBG", "black": 0, "white": 10}, "RGGB, BGGR, GRBG, GBRG"),
        ({"cfa": "RGGB", "black": 100, "white": 100}, "must exceed"),
        ({"cfa": "RGGB", "black": [0, 1, 2], "white": 100}, "list of 4"),
        ({"cfa": "RGGB", "black": "zero", "white": 100}, "number"),
        ({"cfa": "RGGB", "white": 100}, "lacks black"),
        ([1, 2], "JSON object"),
        ("{not json", "cannot read camera profile"),
        # hostile levels: Python's json reads NaN / Infinity; impossible or absurd sensor counts
        ('{"cfa": "RGGB", "black": NaN, "white": 4095}', "NaN is not a level"),
        ('{"cfa": "RGGB", "black": 0, "white": Infinity}', "Infinity is not a level"),
        ('{"cfa": "RGGB", "black": [0, 0, -Infinity, 0], "white": 4095}', "-Infinity is not a level"),
        ({"cfa": "RGGB", "black": -1, "white": 4095}, "negative"),
        ({"cfa": "RGGB", "black": [0, 0, 0, -5], "white": 4095}, "negative"),
        ({"cfa": "RGGB", "black": 0, "white": 1}, "fewer than any camera records"),
        ({"cfa": "RGGB", "black": 1000, "white": 1023}, "fewer than any camera records"),
        ({"cfa": "RGGB", "black": 0, "white": 70000}, "exceeds 65535"),
        ({"cfa": "RGGB", "black": [10, 20, 5000, 10], "white": 4095}, "every channel (not: G2 5000)"),
        ({"cfa": "RGGB", "black": 0, "white": 4095, "whitelevel": 1023}, "unknown key(s) whitelevel"),
        ({"camera": "honor", "black": 0}, "also black"),
    ],
)
def test_json_errors_name_the_file(tmp_path, content, expected):
    write(tmp_path / "camera.json", content)
    with pytest.raises(UserError, match="camera.json") as info:
        resolve_profile(tmp_path / "raw" / "x.png", tmp_path)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_per_image_json_errors_name_that_file(tmp_path):
    write(tmp_path / "x.json", '{"cfa": "RGGB", "black": [0, 0, 0, NaN], "white": 1023}')
    with pytest.raises(UserError, match=r"x\.json: NaN is not a level"):
        resolve_profile(tmp_path / "x.png", tmp_path)
