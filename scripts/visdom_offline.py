#!/usr/bin/env python3
"""Make the installed visdom's web page work without the internet.

``python -m visdom.server`` first runs ``visdom.server.build.download_scripts()``, which fetches the page's
JavaScript, CSS and fonts from unpkg.com, cdn.plot.ly, d3js.org and cdnjs into ``visdom/static``; offline
every fetch fails and the dashboard page stays blank. Every one of those files is published in an npm
package at the version visdom asks for, so this script:

1. reads the exact list of files (source URL -> destination under the visdom package) by running the
   installed ``download_scripts()`` into a temporary folder with the network replaced by a recorder;
2. fetches the matching npm packages with ``npm pack`` into a cache (default ``<repo>/.cache/npm``,
   gitignored; nothing is copied into the repository);
3. copies each file out of its package tarball into the installed ``visdom/static/...``;
4. writes ``static/version.built`` with the visdom version, so the server no longer tries to download;
5. makes visdom 0.2.4's page template work with tornado >= 6.6: its ``static_url("../user/style.css")``
   now raises HTTP 403 for every page ("not in root static directory"), so that one link is rewritten to
   the same address (``<static prefix>../user/style.css``, which the browser resolves to ``/user/style.css``,
   served by visdom's own handler) without the static-file lookup.

Running it again when everything is in place does nothing and takes a fraction of a second (the file list is
remembered in the cache, so visdom, which imports torch, is not even imported).

Usage: python -m scripts.visdom_offline [--cache-dir DIR] [--force] [--check]
"""

import argparse
import contextlib
import hashlib
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from unittest import mock

from util.errors import FileSystemError, UserError, run_cli
from util.files import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE_DIR = ROOT / ".cache" / "npm"
BUILT_MARKER = PurePosixPath("static/version.built")
PAGE_TEMPLATE = PurePosixPath("static/index.html")
# tornado >= 6.6 refuses static_url() of a path outside the static folder; the replacement renders the same href
USER_STYLE_LINK_OLD = 'href={{ static_url("../user/style.css") }}'
USER_STYLE_LINK_NEW = "href=\"{{ handler.settings.get('static_url_prefix', '/static/') }}../user/style.css\""
NPM_TIMEOUT_SECONDS = 600

# unpkg serves https://unpkg.com/<package>@<version>[/<file>] straight from the npm registry;
# without a file it serves the package's "main" entry.
UNPKG_URL = re.compile(r"^https?://unpkg\.com/(?P<name>(?:@[^/@]+/)?[^/@]+)@(?P<version>[^/?#]+)(?:/(?P<path>[^?#]*))?")
# cdnjs serves https://cdnjs.cloudflare.com/ajax/libs/<library>/<version>/<file>; the library visdom uses
# (mathjax) is the npm package of the same name and version, with the same file layout.
CDNJS_URL = re.compile(
    r"^https?://cdnjs\.cloudflare\.com/ajax/libs/(?P<name>[^/]+)/(?P<version>[^/]+)/(?P<path>[^?#]+)"
)
# Files visdom 0.2.4 takes from other hosts, and the npm package that publishes the same file
# (versions as documented in docs/visdom-offline.md, checked with `npm view`): URL -> (package, version, file).
OTHER_HOSTS = {
    "https://cdn.plot.ly/plotly-2.11.1.min.js": ("plotly.js-dist-min", "2.11.1", "plotly.min.js"),
    "http://d3js.org/d3.v3.min.js": ("d3", "3.5.17", "d3.min.js"),
    "https://d3js.org/d3-selection-multi.v1.js": ("d3-selection-multi", "1.0.1", "build/d3-selection-multi.js"),
}


@dataclass(frozen=True)
class StaticFile:
    """One file of the visdom page: where visdom downloads it from and where it goes.

    ``dest`` is relative to the visdom package folder (e.g. ``static/js/jquery.min.js``); ``path`` is the
    file inside the npm package, or None for the package's main entry.
    """

    url: str
    dest: PurePosixPath
    package: str
    version: str
    path: str | None

    @property
    def spec(self):
        return f"{self.package}@{self.version}"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Fill the installed visdom package's static/ folder from npm packages so that "
        "`python -m visdom.server` serves a working dashboard without internet access.",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help="where npm package tarballs are kept (default: <repo>/.cache/npm, gitignored)",
    )
    parser.add_argument("--force", action="store_true", help="copy every file again even if already in place")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only report whether the files are in place (exit status 0) or not (exit status 1); runs no npm and "
        "writes nothing into visdom",
    )
    return parser.parse_args(argv)


def visdom_location():
    """Return (installed visdom package folder, visdom version string), without importing visdom (it imports torch)."""
    spec = importlib.util.find_spec("visdom")
    if spec is None or spec.origin is None:
        raise UserError(f"visdom is not installed for {sys.executable}; install it first (see README)")
    visdom_dir = Path(spec.origin).parent
    version_file = visdom_dir / "VERSION"  # what visdom reads into visdom.__version__
    version = version_file.read_text().strip() if version_file.is_file() else "no_version_file"
    return visdom_dir, version


def npm_source(url):
    """Map one download URL of visdom to (npm package, version, file in package or None for its main entry)."""
    if url in OTHER_HOSTS:
        return OTHER_HOSTS[url]
    for pattern in (UNPKG_URL, CDNJS_URL):
        match = pattern.match(url)
        if match:
            return match["name"], match["version"], match["path"] or None
    raise UserError(
        f"the installed visdom downloads {url}, which scripts/visdom_offline.py cannot map to an npm package; "
        "add it to OTHER_HOSTS in scripts/visdom_offline.py"
    )


def list_static_files():
    """Run the installed ``download_scripts()`` against a recording fake network and return its file list.

    Each fake download answers with its own URL, so the file it lands in tells where visdom puts that URL.
    Returns a list of :class:`StaticFile`, sorted by destination.
    """
    from visdom.server import build

    def fake_response(url):
        body = url.encode()
        return SimpleNamespace(read=lambda: body, content=body)

    class RecordingOpener:
        def open(self, req):
            return fake_response(req.full_url)

    fake_request = SimpleNamespace(
        Request=build.request.Request,
        ProxyHandler=build.request.ProxyHandler,
        BaseHandler=build.request.BaseHandler,
        build_opener=lambda *handlers: RecordingOpener(),
        install_opener=lambda opener: None,
    )
    with tempfile.TemporaryDirectory(prefix="visdom-files-") as tmp:
        with (
            mock.patch.object(build, "request", fake_request),
            mock.patch("requests.get", side_effect=lambda url, *a, **k: fake_response(url)),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            build.download_scripts(install_dir=tmp)
        files = []
        for path in sorted(Path(tmp).rglob("*")):
            dest = PurePosixPath(path.relative_to(tmp).as_posix())
            if not path.is_file() or dest == BUILT_MARKER:
                continue
            url = path.read_text()
            files.append(StaticFile(url, dest, *npm_source(url)))
    if not files:
        raise UserError("visdom.server.build.download_scripts() asked for no files; is this visdom 0.2.x?")
    return files


def static_files(visdom_dir, version, cache_dir):
    """The :class:`StaticFile` list of the installed visdom, remembered in ``cache_dir`` per build.py content."""
    digest = hashlib.sha256((visdom_dir / "server" / "build.py").read_bytes()).hexdigest()[:16]
    manifest = cache_dir / f"visdom-{version}-files-{digest}.json"
    if manifest.is_file():
        try:
            rows = json.loads(manifest.read_text())
            return [StaticFile(**dict(row, dest=PurePosixPath(row["dest"]))) for row in rows]
        except (ValueError, TypeError, KeyError):
            pass  # unreadable: list the files again
    files = list_static_files()
    rows = [dict(vars(item), dest=item.dest.as_posix()) for item in files]
    with contextlib.suppress(OSError, FileSystemError):  # only a shortcut: a read-only cache just makes runs slower
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(manifest, json.dumps(rows, indent=1).encode())
    return files


def tarball_name(package, version):
    """The file name ``npm pack`` gives a package tarball (``@scope/name`` -> ``scope-name-<version>.tgz``)."""
    return f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"


def fetch_tarballs(specs, cache_dir):
    """Make sure ``cache_dir`` holds the tarball of every ``(package, version)`` in ``specs``; uses ``npm pack``."""
    missing = sorted({spec for spec in specs if not (cache_dir / tarball_name(*spec)).is_file()})
    if not missing:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(
            "npm not found on PATH: scripts/visdom_offline.py needs it once to fetch "
            f"{', '.join(f'{p}@{v}' for p, v in missing)}; install Node.js/npm (Debian: apt-get install npm)"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"fetching {len(missing)} npm packages into {cache_dir} ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="npm-pack-", dir=cache_dir) as tmp:
        # packing into a temporary folder first: an interrupted download never leaves a truncated tarball behind
        specs_text = [f"{package}@{version}" for package, version in missing]
        cmd = [npm, "pack", "--ignore-scripts", "--loglevel=error", "--pack-destination", tmp, *specs_text]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired as err:
            raise UserError(
                f"`npm pack` did not finish in {NPM_TIMEOUT_SECONDS} s; check access to the npm registry"
            ) from err
        if result.returncode != 0:
            raise UserError(
                f"`npm pack {' '.join(specs_text)}` failed: {npm_error_reason(result)}; "
                "check access to the npm registry (npm config get registry)"
            )
        for spec in missing:
            packed = Path(tmp) / tarball_name(*spec)
            if not packed.is_file():
                raise UserError(f"`npm pack` did not produce {packed.name} for {spec[0]}@{spec[1]}")
            packed.replace(cache_dir / packed.name)


def npm_error_reason(result):
    """The informative line of a failed npm run (npm prints ``npm error code X`` lines before the reason)."""
    lines = [line.removeprefix("npm error").strip() for line in result.stderr.splitlines()]
    for line in lines:
        if line and not re.match(r"^(code|errno|syscall)\b", line):
            return line
    return f"exit status {result.returncode}"


def package_members(tar):
    """Map each file path inside an npm tarball (its top folder, usually ``package/``, stripped) to its member."""
    members = {}
    for member in tar.getmembers():
        if member.isfile():
            parts = PurePosixPath(member.name).parts
            if len(parts) > 1:
                members[PurePosixPath(*parts[1:]).as_posix()] = member
    return members


def main_entry(tar, members, spec):
    """The file a CDN serves for a bare ``<package>@<version>`` URL: package.json "main" (default index.js)."""
    if "package.json" not in members:
        raise UserError(f"npm package {spec} has no package.json; delete its tarball from the cache and run again")
    main = json.loads(tar.extractfile(members["package.json"]).read()).get("main") or "index.js"
    main = PurePosixPath(main).as_posix()
    for candidate in (main, f"{main}.js", f"{main}/index.js"):
        if candidate in members:
            return candidate
    raise UserError(f"npm package {spec} has no file for its main entry {main!r}")


def install_files(files, visdom_dir, cache_dir):
    """Copy every :class:`StaticFile` from its cached npm tarball into ``visdom_dir``."""
    by_package = {}
    for item in files:
        by_package.setdefault((item.package, item.version), []).append(item)
    for (package, version), items in sorted(by_package.items()):
        tarball = cache_dir / tarball_name(package, version)
        try:
            with tarfile.open(tarball, "r:gz") as tar:
                members = package_members(tar)
                for item in items:
                    path = item.path if item.path is not None else main_entry(tar, members, item.spec)
                    if path not in members:
                        raise UserError(f"{tarball} has no file {path!r} (wanted for {item.url})")
                    data = tar.extractfile(members[path]).read()
                    atomic_write_bytes(visdom_dir / item.dest, data)
        except (tarfile.TarError, EOFError, OSError) as err:  # writes raise FileSystemError, naming the file
            raise UserError(f"cannot read {tarball} ({err}); delete it and run again") from err


def fix_page_template(visdom_dir):
    """Rewrite the user-style link of ``static/index.html`` that tornado >= 6.6 answers with HTTP 403."""
    template = visdom_dir / PAGE_TEMPLATE
    text = template.read_text()
    if USER_STYLE_LINK_OLD in text:
        atomic_write_bytes(template, text.replace(USER_STYLE_LINK_OLD, USER_STYLE_LINK_NEW).encode())


def is_complete(files, visdom_dir, version):
    """True when every file is present and non-empty, ``static/version.built`` holds ``version`` and the
    page template has no link that tornado >= 6.6 refuses."""
    marker = visdom_dir / BUILT_MARKER
    if not marker.is_file() or marker.read_text().strip() != version:
        return False
    if USER_STYLE_LINK_OLD in (visdom_dir / PAGE_TEMPLATE).read_text():
        return False
    return all((visdom_dir / item.dest).is_file() and (visdom_dir / item.dest).stat().st_size > 0 for item in files)


def main(argv=None):
    args = parse_args(argv)
    visdom_dir, version = visdom_location()
    cache_dir = args.cache_dir.resolve()
    files = static_files(visdom_dir, version, cache_dir)
    if args.check:
        complete = is_complete(files, visdom_dir, version)
        print(f"visdom {version} static files in {visdom_dir}: {'complete' if complete else 'missing'}")
        return 0 if complete else 1
    if not args.force and is_complete(files, visdom_dir, version):
        print(f"visdom {version} static files already in place in {visdom_dir}")
        return 0
    fetch_tarballs({(item.package, item.version) for item in files}, cache_dir)
    marker = visdom_dir / BUILT_MARKER
    try:
        # a stale marker with missing files would make the server skip downloads it still needs
        marker.unlink(missing_ok=True)
    except PermissionError as err:
        raise UserError(f"cannot write into {visdom_dir} ({err}); run with a Python whose visdom you own") from err
    install_files(files, visdom_dir, cache_dir)
    fix_page_template(visdom_dir)
    atomic_write_bytes(marker, version.encode())
    print(f"installed {len(files)} visdom {version} static files from npm packages into {visdom_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
