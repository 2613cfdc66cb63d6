"""Training dashboard: loss and learning-rate curves and sample images in visdom, a loss log and an HTML page.

The visdom part is optional: with ``display_id <= 0``, on ranks other than 0, or when no visdom server answers,
every display call does nothing and training goes on. Without a server the constructor warns once (with the
command that starts one: ``bash scripts/start_visdom.sh``); a server that stops answering later is reported once
and then left alone. The loss log and the HTML page never depend on the server.

Files written by rank 0, under ``<checkpoints_dir>/<name>/``:

- ``loss_log.txt``: one line per :meth:`Visualizer.plot_losses` call, ``iteration <n>: <loss> <value> ...``;
- ``web/index.html`` and ``web/images/iter<n>_<visual>.png``: the images of each :meth:`Visualizer.save_html`
  call, newest iteration first.

Visuals are ``(3, H, W)`` float RGB in [0, 1] (sRGB encoded) or ``(4, h, w)`` float packed RAW
(``[R, G1, G2, B]``, ``(x - black) / (white - black)``), shown through ``util.isp.raw_preview``; a leading batch
dimension is allowed and its first item is shown. Images are quantised as ``x.clamp(0, 1).mul(255).round().byte()``
(:func:`util.image_io.quantize`).
"""

import logging
import re
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from util.files import atomic_write_text
from util.image_io import quantize, to_uint8, write_rgb
from util.isp import raw_preview

DEFAULT_SERVER = "http://localhost"
DEFAULT_PORT = 8097
DEFAULT_WINSIZE = 256  # longest side, in pixels, of one image tile on the dashboard and in the HTML page
DEFAULT_NCOLS = 4  # image tiles per row of the dashboard's image window
START_COMMAND = "bash scripts/start_visdom.sh"
CONNECT_TIMEOUT_SECONDS = 2.0  # a local server accepts in milliseconds; a firewalled host must not stall training
SEND_TIMEOUT_SECONDS = 10.0  # one message (an image grid is a few hundred kB)
GRID_PADDING = 4  # white pixels between image tiles
GRID_BACKGROUND = 255
IMAGE_NAME = re.compile(r"^iter(?P<iteration>\d+)_(?P<visual>.+)\.png$")
LOSS_LINE = re.compile(r"^iteration (?P<iteration>\d+): ")  # a loss_log.txt line written by plot_losses


class DashboardWarning(UserWarning):
    """The visdom dashboard is unavailable; training continues without it."""


def raw_to_rgb_preview(packed):
    """``(4, h, w)`` float packed RAW -> ``(3, h, w)`` float RGB in [0, 1] for display (``util.isp.raw_preview``)."""
    return torch.as_tensor(raw_preview(packed), dtype=torch.float32)


def visual_to_rgb(name, x):
    """One visual -> ``(3, H, W)`` float32 CPU tensor (RGB in [0, 1]; RAW through its preview; grey repeated).

    ``x``: tensor or array ``(3, H, W)`` RGB, ``(4, h, w)`` packed RAW or ``(1, H, W)`` grey, optionally with a
    leading batch dimension (the first item is used).
    """
    x = torch.as_tensor(x).detach().to("cpu", torch.float32)
    if x.ndim == 4:
        x = x[0]
    if x.ndim != 3 or x.shape[0] not in (1, 3, 4):
        raise ValueError(
            f"visual {name!r} has shape {tuple(x.shape)}; expected (3, H, W) RGB, (4, h, w) packed RAW or (1, H, W)"
        )
    if x.shape[0] == 4:
        x = raw_to_rgb_preview(x)
    elif x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x


def image_grid(tiles, ncols):
    """Lay out ``(3, h, w)`` uint8 tiles of one size left to right, ``ncols`` per row, on a white background."""
    _, h, w = tiles[0].shape
    nrows = -(-len(tiles) // ncols)
    ncols = min(ncols, len(tiles))
    grid = torch.full(
        (3, nrows * (h + GRID_PADDING) + GRID_PADDING, ncols * (w + GRID_PADDING) + GRID_PADDING),
        GRID_BACKGROUND,
        dtype=torch.uint8,
    )
    for k, tile in enumerate(tiles):
        top = GRID_PADDING + (k // ncols) * (h + GRID_PADDING)
        left = GRID_PADDING + (k % ncols) * (w + GRID_PADDING)
        grid[:, top : top + h, left : left + w] = tile
    return grid


def _make_timeout_visdom(visdom_module):
    """A ``visdom.Visdom`` whose every request gives up after the timeouts above instead of hanging."""

    class TimeoutVisdom(visdom_module.Visdom):
        def _handle_post(self, url, data=None):
            response = self.session.post(url, data=data or {}, timeout=(CONNECT_TIMEOUT_SECONDS, SEND_TIMEOUT_SECONDS))
            return response.text

    return TimeoutVisdom


class Visualizer:
    """Loss/learning-rate curves and images on a visdom dashboard, plus ``loss_log.txt`` and an HTML page.

    ``opt`` fields (missing optional ones take the defaults): ``name``, ``checkpoints_dir``,
    ``display_id`` (> 0 enables visdom; also names the windows, so several runs can share one env),
    ``display_server`` ("http://localhost"), ``display_port`` (8097), ``display_env`` (default ``name``),
    ``display_winsize`` (256), ``display_ncols`` (4) and ``rank`` (0; other ranks write and display nothing).
    """

    def __init__(self, opt):
        self.name = opt.name
        self.rank = int(getattr(opt, "rank", 0) or 0)
        self.display_id = int(getattr(opt, "display_id", 0) or 0)
        self.server = getattr(opt, "display_server", None) or DEFAULT_SERVER
        self.port = int(getattr(opt, "display_port", None) or DEFAULT_PORT)
        self.env = getattr(opt, "display_env", None) or opt.name
        self.winsize = int(getattr(opt, "display_winsize", None) or DEFAULT_WINSIZE)
        self.ncols = int(getattr(opt, "display_ncols", None) or DEFAULT_NCOLS)
        self.run_dir = Path(opt.checkpoints_dir) / opt.name
        self.log_path = self.run_dir / "loss_log.txt"
        self.web_dir = self.run_dir / "web"
        self.image_dir = self.web_dir / "images"
        self.win_losses = f"losses_{self.display_id}"
        self.win_lr = f"lr_{self.display_id}"
        self.win_images = f"images_{self.display_id}"
        self.win_val_psnr = f"val_psnr_{self.display_id}"
        self.win_val_quality = f"val_quality_{self.display_id}"
        self.vis = None  # the visdom client; None while the dashboard is off
        self._created = set()  # windows created by this process (the first send replaces a stale window)
        self._html_rows = {}  # iteration -> visual names, for the HTML page
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log:
            log.write(f"================ training loss ({time.strftime('%Y-%m-%d %H:%M:%S')}) ================\n")
        self._html_rows = self._scan_saved_images()
        if self.display_id > 0:
            self.vis = self._connect()

    @property
    def display_enabled(self):
        """True while images and curves are being sent to a visdom server."""
        return self.vis is not None

    @property
    def address(self):
        return f"{self.server}:{self.port}"

    # ---------------------------------------------------------------- visdom connection

    def _start_hint(self):
        return START_COMMAND if self.port == DEFAULT_PORT else f"{START_COMMAND} {self.port}"

    def _warn_unavailable(self, what, stacklevel):
        warnings.warn(
            f"visdom server at {self.address} {what}; training continues without the dashboard; "
            f"start one with: {self._start_hint()}",
            DashboardWarning,
            stacklevel=stacklevel + 1,
        )

    def _connect(self):
        """Return a visdom client if a visdom server answers at the configured address, else warn once and None."""
        try:
            import visdom
        except ImportError as err:
            warnings.warn(
                f"visdom is not importable ({err}); training continues without the dashboard; "
                "install visdom or set display_id to 0",
                DashboardWarning,
                stacklevel=3,
            )
            return None

        visdom_logger = logging.getLogger("visdom")
        if visdom_logger.level == logging.NOTSET:
            # visdom logs a warning about every new session and about its unused event socket
            visdom_logger.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                # visdom 0.2.4 calls the deprecated Logger.warn
                warnings.filterwarnings("ignore", "The 'warn' method is deprecated", DeprecationWarning)
                vis = _make_timeout_visdom(visdom)(
                    server=self.server, port=self.port, env=self.env, raise_exceptions=True, use_incoming_socket=False
                )
            answers = vis.check_connection()
        except OSError:  # ConnectionError raised by visdom and every requests exception are OSErrors
            answers = False
        if not answers:
            self._warn_unavailable("not reachable", stacklevel=3)  # the line that created the Visualizer
            return None
        return vis

    def _send(self, function, **kwargs):
        """Call a visdom client method; on a connection error warn once and switch the dashboard off."""
        if self.vis is None:
            return
        try:
            function(**kwargs)
        except OSError as err:
            self.vis = None
            self._warn_unavailable(f"stopped answering ({type(err).__name__})", stacklevel=3)
            return
        self._created.add(kwargs.get("win"))

    def _line_point(self, win, iteration, values, opts):
        """Add one point per named trace; the first point of this process creates (replaces) the window."""
        vis = self.vis
        if vis is None:
            return
        names = list(values)
        if win not in self._created:
            self._send(
                vis.line,
                X=np.full((1, len(names)), float(iteration)),
                Y=np.array([[values[name] for name in names]], dtype=np.float64),
                win=win,
                env=self.env,
                opts=dict(opts, legend=names),
            )
            return
        for name in names:  # appending by trace name also adds a trace for a name not seen before
            self._send(
                vis.line,
                X=np.array([float(iteration)]),
                Y=np.array([values[name]], dtype=np.float64),
                win=win,
                env=self.env,
                update="append",
                name=name,
            )

    # ---------------------------------------------------------------- public API

    def plot_losses(self, iteration, losses):
        """Append ``losses`` (name -> float or 0-d tensor) at ``iteration`` to loss_log.txt and the loss plot."""
        if self.rank != 0:
            return
        values = {name: float(value) for name, value in losses.items()}
        with open(self.log_path, "a") as log:
            log.write(f"iteration {iteration}: " + " ".join(f"{name} {value:.6g}" for name, value in values.items()))
            log.write("\n")
        if values:
            self._line_point(
                self.win_losses,
                iteration,
                values,
                dict(title=f"{self.name} losses", xlabel="iteration", ylabel="loss"),
            )

    def plot_lr(self, iteration, lr):
        """Add the learning rate ``lr`` at ``iteration`` to the learning-rate plot (log scale)."""
        if self.rank != 0:
            return
        self._line_point(
            self.win_lr,
            iteration,
            {"lr": float(lr)},
            dict(title=f"{self.name} learning rate", xlabel="iteration", ylabel="learning rate", ytype="log"),
        )

    def plot_validation(self, iteration, results):
        """Add one validation to the dashboard: ``results`` = ``{set name: means}`` as
        ``training.validation.Validator.run`` returns them. Window 1: T PSNR gain over the input per set (dB), the
        worst image's gain, the separation (``util.tone``: the gain less what T's global tone alone scores) and the
        gain beyond T's tone curve;
        window 2: T SSIM and LPIPS per set (absolute values, the input's as ``<set> input`` traces)."""
        if self.rank != 0 or self.vis is None or not results:
            return
        gains, quality = {}, {}
        for name, m in results.items():
            gains[f"{name} mean"] = float(m["gain_psnr"])
            gains[f"{name} worst"] = float(m.get("worst_gain_psnr", float("nan")))
            if "separation_psnr" in m:  # the part of the mean gain that T's global tone does not explain
                gains[f"{name} separation"] = float(m["separation_psnr"])
            if "beyond_curve_psnr" in m:  # the part that no per-channel tone curve of the input explains
                gains[f"{name} beyond curve"] = float(m["beyond_curve_psnr"])
            for metric in ("ssim", "lpips"):
                if f"T_{metric}" in m:
                    quality[f"{name} T {metric.upper()}"] = float(m[f"T_{metric}"])
                    quality[f"{name} input {metric.upper()}"] = float(m[f"I_{metric}"])
        self._line_point(self.win_val_psnr, iteration, gains,
                         dict(title=f"{self.name} validation: T PSNR - input PSNR (dB)", xlabel="iteration",
                              ylabel="dB"))
        if quality:
            self._line_point(self.win_val_quality, iteration, quality,
                             dict(title=f"{self.name} validation: SSIM (up) and LPIPS (down)", xlabel="iteration",
                                  ylabel="value"))

    def display_images(self, iteration, visuals):
        """Show ``visuals`` (name -> RGB ``(3, H, W)`` or packed RAW ``(4, h, w)``) side by side in one window.

        Every tile is resized to the largest visual's size (packed RAW is half size), then scaled so that its
        longest side is at most ``display_winsize``; the caption lists the names in tile order.
        """
        if self.vis is None or not visuals:
            return
        images = [visual_to_rgb(name, x) for name, x in visuals.items()]
        height = max(image.shape[1] for image in images)
        width = max(image.shape[2] for image in images)
        scale = min(1.0, self.winsize / max(height, width))
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        tiles = [quantize(_resize(image, size)) for image in images]
        grid = image_grid(tiles, self.ncols)
        self._send(
            self.vis.image,
            img=grid.numpy(),
            win=self.win_images,
            env=self.env,
            opts=dict(title=f"{self.name} iteration {iteration}", caption=" | ".join(visuals)),
        )

    def save_html(self, iteration, visuals):
        """Save ``visuals`` as PNGs under web/images/ and rewrite web/index.html (newest iteration first).

        PNGs keep each visual's own size (packed RAW previews are half size); the page shows them
        ``display_winsize`` pixels wide, each linked to its full-size file.
        """
        if self.rank != 0 or not visuals:
            return
        names = []
        for name, x in visuals.items():
            safe = _safe_name(name)
            write_rgb(self.image_dir / _image_file(iteration, safe), to_uint8(visual_to_rgb(name, x)))
            names.append(safe)
        self._html_rows[int(iteration)] = names
        self._write_index()

    # ---------------------------------------------------------------- HTML page

    def _scan_saved_images(self):
        """iteration -> visual names of the PNGs already under web/images/ (a resumed run keeps its history)."""
        rows = {}
        if self.image_dir.is_dir():
            for path in sorted(self.image_dir.iterdir()):
                match = IMAGE_NAME.match(path.name)
                if match:
                    rows.setdefault(int(match["iteration"]), []).append(match["visual"])
        return rows

    def _write_index(self):
        import dominate
        from dominate.tags import a, div, h1, h3, img, p, style, table, td, tr

        doc = dominate.document(title=f"{self.name} training images")
        with doc.head:
            style("td { vertical-align: top; text-align: center; padding: 4px; } img { image-rendering: pixelated; }")
        with doc:
            h1(f"{self.name}: training images")
            for iteration in sorted(self._html_rows, reverse=True):
                with div():
                    h3(f"iteration {iteration}")
                    with table(), tr():
                        for name in self._html_rows[iteration]:
                            src = f"images/{_image_file(iteration, name)}"
                            with td():
                                with a(href=src):
                                    img(src=src, width=self.winsize, alt=name)
                                p(name)
        atomic_write_text(self.web_dir / "index.html", doc.render())


def drop_losses_after(log_path, iteration) -> int:
    """Delete the loss lines of iterations after ``iteration`` from a loss_log.txt (a resumed run redoes them), keeping
    every other line (the run headers); the file is replaced atomically. Returns the number of lines dropped."""
    path = Path(log_path)
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not ((m := LOSS_LINE.match(line)) and int(m["iteration"]) > iteration)]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(kept))
    return len(lines) - len(kept)


def _resize(image, size):
    """``(3, H, W)`` float -> ``(3, *size)``; area-aware when shrinking, unchanged when already that size."""
    if tuple(image.shape[1:]) == size:
        return image
    shrink = size[0] < image.shape[1] or size[1] < image.shape[2]
    resized = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return resized[0]


def _safe_name(name):
    """A visual name usable in a file name (letters, digits, ``_ . -``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))


def _image_file(iteration, name):
    return f"iter{int(iteration):08d}_{name}.png"
