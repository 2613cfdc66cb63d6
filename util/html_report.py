"""HTML pages: an evaluation's (each image's input, predictions and ground truth side by side, with metrics) and the
before/after page of your own photos (``remove_reflection.py --page``)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import quote

import dominate
import numpy as np
from dominate import tags
from PIL import Image

from util.files import atomic_write_text

IMAGE_ORDER = (("I", "input I"), ("T", "predicted T"), ("T_gt", "ground-truth T"), ("R", "predicted R"),
               ("R_gt", "ground-truth R"))


def _fmt(value, digits):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def image_url(name: str) -> str:
    """Relative URL of ``images/<name>``: percent-encoded, so that ``#``, ``%``, ``?`` and spaces in file names
    still link to the file (they would otherwise start a fragment, an escape or a query)."""
    return "images/" + quote(name, safe="")


def write_report(path: Path, title: str, rows: list[dict], means: dict, header_lines: list[str], width: int = 256):
    """Write ``index.html``: one table row per image (``rows[i]['images']`` maps kind -> file name under images/)."""
    doc = dominate.document(title=title)
    with doc.head:
        tags.style("body{font-family:sans-serif} td{vertical-align:top;padding:4px;font-size:12px} "
                   "table.m td{padding:2px 8px} img{border:1px solid #ccc}")
    with doc:
        tags.h2(title)
        for line in header_lines:
            tags.p(line)
        with tags.table(cls="m", border=1):
            with tags.tr():
                for h in ("", "PSNR (dB)", "SSIM", "LPIPS"):
                    tags.th(h)
            for key, label in (("T", "T vs GT"), ("R", "R vs GT"), ("I", "input I vs GT T (do nothing)")):
                if f"{key}_psnr" in means:
                    with tags.tr():
                        tags.td(f"mean {label}")
                        tags.td(_fmt(means.get(f"{key}_psnr"), 2))
                        tags.td(_fmt(means.get(f"{key}_ssim"), 4))
                        tags.td(_fmt(means.get(f"{key}_lpips"), 4))
        with tags.table():
            for row in rows:
                with tags.tr():
                    for kind, label in IMAGE_ORDER:
                        name = row["images"].get(kind)
                        if name is None:
                            continue
                        with tags.td():
                            url = image_url(name)
                            with tags.a(href=url):
                                tags.img(src=url, width=width)
                            tags.br()
                            text = f"{row['stem']}: {label}"
                            key = {"T": "T", "R": "R", "I": "I"}.get(kind)
                            if key and f"{key}_psnr" in row:
                                text += (f" | {_fmt(row[f'{key}_psnr'], 2)} dB, SSIM {_fmt(row[f'{key}_ssim'], 4)}"
                                         f", LPIPS {_fmt(row.get(f'{key}_lpips'), 4)}")
                            tags.span(text)
    atomic_write_text(path, doc.render())


# ----------------------------------------------------------------------------------------------------------------
# Before / after page of remove_reflection.py --page
# ----------------------------------------------------------------------------------------------------------------

PREVIEW_REDUCING_GAP = 3.0  # Pillow: shrink by whole factors first, then Lanczos over the last factor of 3 (fast)


def file_url(target, page_dir) -> str:
    """URL of the file ``target`` on a page in the folder ``page_dir``: the relative path, percent-encoded part by
    part (``#``, ``%``, ``?`` and spaces still reach the file), or a ``file://`` URI where there is no relative path
    (another drive)."""
    target = Path(target).resolve()
    try:
        relative = os.path.relpath(target, Path(page_dir).resolve())
    except ValueError:
        return target.as_uri()
    return "/".join(quote(part, safe="") for part in Path(relative).parts)


def make_preview(rgb_u8: np.ndarray, long_side: int) -> np.ndarray:
    """``rgb_u8`` ((H, W, 3) uint8) shrunk (Lanczos) to a long side of ``long_side`` pixels; a smaller one as it is."""
    h, w = rgb_u8.shape[:2]
    if max(h, w) <= long_side:
        return rgb_u8
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = Image.fromarray(np.ascontiguousarray(rgb_u8))
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS, reducing_gap=PREVIEW_REDUCING_GAP))


def write_before_after(path, title: str, rows: list[dict], header_lines: list[str], failures=()) -> None:
    """Write the before/after page ``path`` (``index.html``) of ``remove_reflection.py --page``.

    ``rows``: one per photo, ``{"title": str, "cells": [(label, preview, full), ...], "links": [(label, file), ...]}``
    with file paths: each preview is shown side by side and links to its full file (the input photo, the result);
    ``links`` are further files of the photo (its DNG). ``failures``: (photo, message) pairs, listed at the end.
    Written whole or not at all.
    """
    page_dir = Path(path).parent
    doc = dominate.document(title=title)
    with doc.head:
        tags.meta(charset="utf-8")
        tags.style("body{font-family:sans-serif} td{vertical-align:top;padding:4px;font-size:12px} "
                   "img{border:1px solid #ccc;max-width:100%;height:auto} table{width:100%;table-layout:fixed}")
    with doc:
        tags.h2(title)
        for line in header_lines:
            tags.p(line)
        for row in rows:
            tags.h3(row["title"])
            with tags.table(), tags.tr():
                for label, preview, full in row["cells"]:
                    with tags.td():
                        with tags.a(href=file_url(full, page_dir)):
                            tags.img(src=file_url(preview, page_dir), alt=label)
                        tags.br()
                        tags.span(f"{label} ({Path(full).name})")
            if row.get("links"):
                with tags.p():
                    for i, (label, target) in enumerate(row["links"]):
                        if i:
                            tags.span(" | ")
                        tags.a(label, href=file_url(target, page_dir))
        if failures:
            tags.h3("Failed")
            with tags.ul():
                for photo, message in failures:
                    tags.li(f"{photo}: {message}")
    atomic_write_text(path, doc.render())
