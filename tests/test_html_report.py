"""util.html_report: links and images of index.html reach their files whatever characters the names hold."""

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin
from urllib.request import url2pathname

import numpy as np

from util.html_report import write_report
from util.image_io import write_rgb

HOSTILE_STEMS = ["plain", "a#1", "50%off", "with space", "what?", "x&y", "%41", "ünï"]


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for key, value in attrs if key in ("href", "src")]


def test_links_resolve_for_hostile_file_names(tmp_path):
    rows = []
    for stem in HOSTILE_STEMS:
        names = {kind: f"{stem}_{kind}.png" for kind in ("I", "T", "R")}
        for name in names.values():
            write_rgb(tmp_path / "images" / name, np.zeros((4, 4, 3), np.uint8))
        rows.append({"stem": stem, "images": names, "T_psnr": 20.0, "T_ssim": 0.5})
    write_report(tmp_path / "index.html", "t", rows, {"T_psnr": 20.0, "T_ssim": 0.5}, ["header"])
    parser = Links()
    parser.feed((tmp_path / "index.html").read_text())
    assert len(parser.urls) == 2 * 3 * len(HOSTILE_STEMS)
    base = (tmp_path / "index.html").as_uri()
    for url in parser.urls:
        assert not any(c in url for c in "#? "), url  # a fragment, a query or a raw space would break the link
        target = urljoin(base, url)  # what a browser requests
        assert target.startswith("file://")
        assert Path(url2pathname(target[len("file://"):])).is_file(), url
    assert {unquote(u) for u in parser.urls} == {f"images/{s}_{k}.png" for s in HOSTILE_STEMS for k in "ITR"}
