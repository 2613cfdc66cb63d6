"""The HTML page of an evaluation: each image's input, predictions and ground truth side by side, with metrics."""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import quote

import dominate
from dominate import tags

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
