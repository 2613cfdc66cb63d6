"""util/visualizer.py against a real visdom server, without one, its HTML page, and the dashboard in headless Chromium.

The server is started once per module as a subprocess on a free loopback port with a temporary ``-env_path``.
The browser test needs ``chromium`` (Debian packages chromium + chromium-driver) and the page's static files,
which it installs with scripts/visdom_offline.py (npm registry access the first time).
"""

import base64
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from scripts import visdom_offline
from util.image_io import quantize
from util.visualizer import GRID_PADDING, DashboardWarning, Visualizer, raw_to_rgb_preview

SERVER_START_TIMEOUT_SECONDS = 60  # a loaded 2-core CI machine needs ~15 s to import visdom (and torch) and listen
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_TIMEOUT_SECONDS = 90
CHROMIUM_VIRTUAL_TIME_MS = 10_000  # page scripts, socket and plotly drawing all finish well within this


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_opt(tmp_path, port, env, **overrides):
    fields = dict(
        name="run",
        checkpoints_dir=str(tmp_path / "checkpoints"),
        display_id=1,
        display_server="http://127.0.0.1",
        display_port=port,
        display_env=env,
        display_winsize=64,
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


def read_log(opt):
    """loss_log.txt -> list of (iteration, {name: value}) for its data lines."""
    rows = []
    for line in (Path(opt.checkpoints_dir) / opt.name / "loss_log.txt").read_text().splitlines():
        match = re.match(r"^iteration (\d+): (.*)$", line)
        if match:
            words = match[2].split()
            rows.append((int(match[1]), {k: float(v) for k, v in zip(words[::2], words[1::2], strict=True)}))
    return rows


@pytest.fixture(scope="module")
def visdom_server(tmp_path_factory):
    """Port of a visdom server on 127.0.0.1, stopped after the module's tests.

    Started as ``python -c 'run_server.main()'``: the same server as ``python -m visdom.server`` without its
    download step, which would try the internet whenever the page's static files are not installed.
    """
    port = free_port()
    env_path = tmp_path_factory.mktemp("visdom_env")
    log_path = env_path / "server.log"
    cmd = [sys.executable, "-c", "from visdom.server.run_server import main; main()"]
    cmd += ["-port", str(port), "-bind_local", "-env_path", str(env_path)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"visdom server exited with status {proc.returncode}:\n{log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"visdom server did not listen within {SERVER_START_TIMEOUT_SECONDS} s")
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def client(port, env):
    import visdom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # visdom 0.2.4 calls the deprecated Logger.warn
        return visdom.Visdom(
            server="http://127.0.0.1", port=port, env=env, raise_exceptions=True, use_incoming_socket=False
        )


def window(port, env, win):
    return json.loads(client(port, env).get_window_data(win, env))


def test_losses_and_lr_round_trip_through_server(visdom_server, tmp_path):
    opt = make_opt(tmp_path, visdom_server, env="round_trip")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DashboardWarning)
        viz = Visualizer(opt)
    assert viz.display_enabled
    sent = [
        (10, {"G_L1": 0.8125, "G_perc": 1.2345678901234567}),
        (20, {"G_L1": 0.5, "G_perc": 0.987654321}),
        (30, {"G_L1": 0.25, "G_perc": torch.tensor(0.75), "D_adv": 0.1}),  # a loss that starts later
    ]
    for iteration, losses in sent:
        viz.plot_losses(iteration, losses)
    viz.plot_lr(10, 2e-4)
    viz.plot_lr(20, 1e-4)

    data = window(visdom_server, "round_trip", viz.win_losses)
    assert data["title"] == "run losses"
    traces = {trace["name"]: trace for trace in data["content"]["data"]}
    assert set(traces) == {"G_L1", "G_perc", "D_adv"}
    assert traces["G_L1"]["x"] == [10, 20, 30]
    assert traces["G_L1"]["y"] == [0.8125, 0.5, 0.25]
    assert traces["G_perc"]["y"] == [1.2345678901234567, 0.987654321, 0.75]
    assert (traces["D_adv"]["x"], traces["D_adv"]["y"]) == ([30], [0.1])
    lr = window(visdom_server, "round_trip", viz.win_lr)["content"]["data"]
    assert [(t["name"], t["x"], t["y"]) for t in lr] == [("lr", [10, 20], [2e-4, 1e-4])]

    logged = [(10, sent[0][1]), (20, sent[1][1]), (30, {"G_L1": 0.25, "G_perc": 0.75, "D_adv": 0.1})]
    rows = read_log(opt)
    assert [iteration for iteration, _ in rows] == [iteration for iteration, _ in logged]
    for (_, got), (_, want) in zip(rows, logged, strict=True):
        assert got == pytest.approx(want, rel=1e-5)  # the log keeps 6 significant digits


def test_images_reach_server_pixel_exact(visdom_server, tmp_path):
    viz = Visualizer(make_opt(tmp_path, visdom_server, env="images", display_winsize=64))
    gen = torch.Generator().manual_seed(0)
    I_rgb = torch.rand(3, 16, 20, generator=gen)
    I_raw = torch.rand(1, 4, 8, 10, generator=gen)  # batch dimension: its first item is shown
    viz.display_images(7, {"I_rgb": I_rgb, "I_raw": I_raw})

    data = window(visdom_server, "images", viz.win_images)
    assert data["title"] == "run iteration 7"
    assert data["content"]["caption"] == "I_rgb | I_raw"
    png = base64.b64decode(data["content"]["src"].split(",", 1)[1])
    grid = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert grid.shape == (16 + 2 * GRID_PADDING, 2 * 20 + 3 * GRID_PADDING, 3)
    first = grid[GRID_PADDING : GRID_PADDING + 16, GRID_PADDING : GRID_PADDING + 20]
    np.testing.assert_array_equal(first, quantize(I_rgb).permute(1, 2, 0).numpy())
    assert (grid[:, GRID_PADDING + 20 : 2 * GRID_PADDING + 20] == 255).all()  # white gap between tiles
    second = grid[GRID_PADDING : GRID_PADDING + 16, 2 * GRID_PADDING + 20 : 2 * GRID_PADDING + 40].astype(float)
    preview = raw_to_rgb_preview(I_raw[0])  # (3, 8, 10), shown upsampled 2x to the RGB tile's size
    assert abs(second.mean() - 255 * preview.mean().item()) < 3


def test_send_failure_warns_once_and_disables(visdom_server, tmp_path, monkeypatch):
    opt = make_opt(tmp_path, visdom_server, env="failing")
    viz = Visualizer(opt)
    assert viz.display_enabled

    def refuse(*args, **kwargs):
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(viz.vis, "_handle_post", refuse)
    with pytest.warns(DashboardWarning) as record:
        viz.plot_losses(1, {"G_L1": 1.0})
        viz.plot_losses(2, {"G_L1": 0.5})
        viz.display_images(2, {"I_rgb": torch.zeros(3, 4, 4)})
    assert len(record) == 1
    assert "stopped answering" in str(record[0].message)
    assert not viz.display_enabled
    assert read_log(opt) == [(1, {"G_L1": 1.0}), (2, {"G_L1": 0.5})]


def test_no_server_warns_once_and_keeps_logging(tmp_path):
    port = free_port()  # nothing listens there
    opt = make_opt(tmp_path, port, env="nowhere")
    start = time.monotonic()
    with pytest.warns(DashboardWarning) as record:
        viz = Visualizer(opt)
    assert time.monotonic() - start < 5
    assert len(record) == 1
    message = str(record[0].message)
    assert f"visdom server at http://127.0.0.1:{port} not reachable" in message
    assert f"start one with: bash scripts/start_visdom.sh {port}" in message
    assert not viz.display_enabled
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no further warning, nothing raised
        viz.plot_losses(5, {"G_L1": 0.125, "G_perc": 2.0})
        viz.plot_lr(5, 1e-3)
        viz.display_images(5, {"I_rgb": torch.rand(3, 8, 8), "I_raw": torch.rand(4, 4, 4)})
        viz.plot_losses(6, {"G_L1": 0.0625})
    assert read_log(opt) == [(5, {"G_L1": 0.125, "G_perc": 2.0}), (6, {"G_L1": 0.0625})]


def test_display_off_and_other_ranks(tmp_path):
    off = make_opt(tmp_path, free_port(), env="off", display_id=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        viz = Visualizer(off)
        viz.plot_losses(1, {"G_L1": 1.0})
    assert read_log(off) == [(1, {"G_L1": 1.0})]

    worker = make_opt(tmp_path, free_port(), env="worker", name="worker", rank=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rank 1 does not even try the (absent) server
        viz = Visualizer(worker)
        viz.plot_losses(1, {"G_L1": 1.0})
        viz.save_html(1, {"I_rgb": torch.rand(3, 4, 4)})
    assert not viz.display_enabled
    assert not (tmp_path / "checkpoints" / "worker").exists()


def test_html_page_lists_images_newest_first(tmp_path):
    opt = make_opt(tmp_path, 0, env="html", display_id=0, display_winsize=48)
    viz = Visualizer(opt)
    gen = torch.Generator().manual_seed(1)
    first = {"I_rgb": torch.rand(3, 8, 12, generator=gen), "T_pred": torch.rand(3, 8, 12, generator=gen)}
    second = {"I_rgb": torch.rand(3, 8, 12, generator=gen), "I raw": torch.rand(4, 4, 6, generator=gen)}
    viz.save_html(100, first)
    viz.save_html(200, second)

    web = Path(opt.checkpoints_dir) / "run" / "web"
    html = (web / "index.html").read_text()
    sources = re.findall(r'<img[^>]*src="([^"]+)"', html)
    assert sources == [
        "images/iter00000200_I_rgb.png",
        "images/iter00000200_I_raw.png",  # a name made safe for a file name
        "images/iter00000100_I_rgb.png",
        "images/iter00000100_T_pred.png",
    ]
    assert html.index("iteration 200") < html.index("iteration 100")
    assert re.findall(r'<img[^>]*width="(\d+)"', html) == ["48"] * 4
    for source in sources:
        assert (web / source).is_file()
    saved = np.asarray(Image.open(web / "images/iter00000100_T_pred.png"))
    np.testing.assert_array_equal(saved, quantize(first["T_pred"]).permute(1, 2, 0).numpy())
    assert np.asarray(Image.open(web / "images/iter00000200_I_raw.png")).shape == (4, 6, 3)

    resumed = Visualizer(opt)  # a resumed run keeps the earlier rows
    resumed.save_html(300, {"I_rgb": torch.rand(3, 8, 12, generator=gen)})
    html = (web / "index.html").read_text()
    iterations = re.findall(r'<img[^>]*src="images/iter(\d+)_', html)
    assert iterations == ["00000300", "00000200", "00000200", "00000100", "00000100"]


def test_bad_visual_shape_names_the_visual(tmp_path):
    viz = Visualizer(make_opt(tmp_path, 0, env="bad", display_id=0))
    with pytest.raises(ValueError, match="'T_pred' has shape \\(2, 4, 4\\)"):
        viz.save_html(1, {"T_pred": torch.zeros(2, 4, 4)})


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.skip("headless browser check needs chromium (Debian: apt-get install chromium chromium-driver)")
    return CHROMIUM


@pytest.fixture(scope="module")
def dashboard_static():
    """The visdom page's static files, installed by scripts/visdom_offline.py (idempotent)."""
    offline = visdom_offline
    visdom_dir, version = offline.visdom_location()
    files = offline.static_files(visdom_dir, version, offline.DEFAULT_CACHE_DIR)
    if not offline.is_complete(files, visdom_dir, version):
        if shutil.which("npm") is None:
            pytest.skip("visdom's page files are not installed and npm is absent: run python -m scripts.visdom_offline")
        assert offline.main([]) == 0
    assert offline.is_complete(files, visdom_dir, version)


def test_dashboard_page_renders_loss_plot(chromium, dashboard_static, visdom_server, tmp_path):
    viz = Visualizer(make_opt(tmp_path, visdom_server, env="browser", name="browser_run"))
    for iteration, value in [(1, 1.0), (2, 0.6), (3, 0.45)]:
        viz.plot_losses(iteration, {"G_L1": value, "G_perc": 2 * value})
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--virtual-time-budget={CHROMIUM_VIRTUAL_TIME_MS}",
        "--dump-dom",
        f"http://127.0.0.1:{visdom_server}/env/browser",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_SECONDS)
    dom = result.stdout
    assert result.returncode == 0 and dom, f"chromium failed: {result.stderr[-2000:]}"
    assert "js-plotly-plot" in dom and "main-svg" in dom, "no plotly plot in the dashboard page"
    assert "browser_run losses" in dom
    assert "G_L1" in dom and "G_perc" in dom  # the legend, drawn from the data
