"""What a checkpoint folder says about its generator, and the one resolution of ``--ngf`` / ``--num_cab``.

``train.py`` writes ``<checkpoints_dir>/<name>/architecture.json`` beside ``train_opt.txt`` (rank 0, atomically)::

    {"format": 1, "generator": "CR3Net", "netG": "gen_drop", "ngf": 64, "num_cab": 8}

``format`` is :data:`ARCHITECTURE_FORMAT`; ``netG`` and ``ngf``/``num_cab`` are the flags that rebuild the generator
(``models.networks.define_G``). :func:`resolve_architecture` fills each of ``ngf``/``num_cab`` that no flag gave from
the first of these that has it:

1. the flag (``--ngf``, ``--num_cab``);
2. ``architecture.json``;
3. ``train_opt.txt`` (what folders written before ``architecture.json`` have);
4. the weights ``<epoch>_net_G_T.pth`` themselves, when evaluating (a folder of upstream's holds only the released
   file);
5. the released network's values, 64 and 8.

A new training run never reads the folder (``options.train_options`` gives it the flags' values or the defaults); a
resumed one reads 2 and 3, never the weights (the train state checks them).
"""

from __future__ import annotations

import json
from pathlib import Path

from models.checkpoint import infer_generator_shape, load_state_dict_file
from models.cr3net import NUM_CAB, RELEASED_NGF
from util.errors import UserError
from util.files import atomic_write_text

ARCHITECTURE_FILE = "architecture.json"
ARCHITECTURE_FORMAT = 1  # version of the architecture.json layout
TRAIN_OPTIONS_FILE = "train_opt.txt"  # options.base_options.save_options: "<name>: <value> [<tab>[default: ...]]"
ARCH_FLAGS = ("ngf", "num_cab")  # taken from the checkpoint folder when not given
DEFAULT_NGF = RELEASED_NGF  # width of the released checkpoint
DEFAULT_NUM_CAB = NUM_CAB
DEFAULTS = {"ngf": DEFAULT_NGF, "num_cab": DEFAULT_NUM_CAB}
GENERATOR_NAME = "CR3Net"


def read_saved_options(path) -> dict[str, str]:
    """Options from a ``<phase>_opt.txt`` file (lines ``name: value [default: ...]``), values as text."""
    values = {}
    for line in Path(path).read_text().splitlines():
        if ":" in line and not line.startswith("-"):
            key, _, rest = line.partition(":")
            values[key.strip()] = rest.split("\t")[0].strip()
    return values


def architecture_record(ngf: int, num_cab: int, netG: str = "gen_drop") -> dict:
    """The content of ``architecture.json`` for a generator built with these flags."""
    return {"format": ARCHITECTURE_FORMAT, "generator": GENERATOR_NAME, "netG": str(netG), "ngf": int(ngf),
            "num_cab": int(num_cab)}


def write_architecture(folder, ngf: int, num_cab: int, netG: str = "gen_drop") -> Path:
    """Write ``<folder>/architecture.json`` atomically (:func:`util.files.atomic_write_text`); returns its path."""
    path = Path(folder) / ARCHITECTURE_FILE
    text = json.dumps(architecture_record(ngf, num_cab, netG), indent=2, sort_keys=True) + "\n"
    return atomic_write_text(path, text)


def read_architecture(folder) -> dict | None:
    """The record of ``<folder>/architecture.json``, or None where there is none.

    A file that is not JSON, of another format or without integer ``ngf``/``num_cab`` raises :class:`UserError`
    naming it (never a silent fall-back to another source).
    """
    path = Path(folder) / ARCHITECTURE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}; delete it to fall back on {TRAIN_OPTIONS_FILE}") from None
    if not isinstance(record, dict) or type(record.get("format")) is not int or record["format"] != ARCHITECTURE_FORMAT:
        found = record.get("format") if isinstance(record, dict) else None
        raise UserError(f"{path} is not an architecture record of format {ARCHITECTURE_FORMAT} (format {found!r})")
    for key in ARCH_FLAGS:
        value = record.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UserError(f"{path}: {key} must be a non-negative integer, not {value!r}")
    return record


def _from_train_options(folder) -> dict[str, int]:
    path = Path(folder) / TRAIN_OPTIONS_FILE
    if not path.is_file():
        return {}
    saved = read_saved_options(path)
    return {k: int(saved[k]) for k in ARCH_FLAGS if saved.get(k, "None") not in ("None", "")}


def _from_weights(path) -> dict[str, int]:
    return dict(zip(ARCH_FLAGS, infer_generator_shape(load_state_dict_file(path), path), strict=True))


def saved_architecture(folder, weights=None, wanted=ARCH_FLAGS) -> dict[str, tuple[int, str]]:
    """``{flag: (value, source)}`` for the ``wanted`` flags that the checkpoint folder records: ``architecture.json``,
    then ``train_opt.txt``, then the generator file ``weights`` (when given and present; read only for flags still
    missing). ``source`` is the file's name. Flags that no source gives are left out."""
    found: dict[str, tuple[int, str]] = {}
    record = read_architecture(folder)
    sources = [(ARCHITECTURE_FILE, lambda: record or {}), (TRAIN_OPTIONS_FILE, lambda: _from_train_options(folder))]
    if weights is not None:
        sources.append((Path(weights).name, lambda: _from_weights(weights) if Path(weights).is_file() else {}))
    for name, read in sources:
        missing = [k for k in wanted if k not in found]
        if not missing:
            break
        values = read()
        found.update({k: (int(values[k]), name) for k in missing if k in values})
    return found


def resolve_architecture(opt) -> dict[str, str]:
    """Fill ``opt.ngf`` / ``opt.num_cab`` where they are None, in the order of the module doc; returns
    ``{flag: source}`` (``"flag"``, a file name of the checkpoint folder, or ``"default"``).

    ``opt`` needs ``checkpoints_dir``, ``name``, ``epoch`` and ``is_train`` (the weights are read when evaluating only).
    """
    sources = {k: "flag" for k in ARCH_FLAGS if getattr(opt, k, None) is not None}
    missing = [k for k in ARCH_FLAGS if k not in sources]
    if not missing:
        return sources
    folder = Path(opt.checkpoints_dir) / opt.name
    weights = None if getattr(opt, "is_train", False) else folder / f"{opt.epoch}_net_G_T.pth"
    found = saved_architecture(folder, weights, missing)
    for key in missing:
        value, source = found.get(key, (DEFAULTS[key], "default"))
        setattr(opt, key, value)
        sources[key] = source
    return sources
