"""Find plug-in classes by name, case-insensitively (``--model RAWRR`` and ``--model rawrr`` are one model), and
let their option setters share flags (:func:`add_flag_once`)."""

import argparse
import importlib
import inspect
from pathlib import Path

from util.errors import UserError


def find_class(package: str, suffix: str, name: str, flag: str, exclude_suffix: str | None = None):
    """The class ``<Name><Suffix>`` defined in ``<package>/<name>_<suffix>.py``, matched case-insensitively.

    ``find_class("models", "model", "rawrr", "--model")`` returns ``models.rawrr_model.RAWRRModel``. An unknown
    name raises :class:`UserError` listing the choices.
    """
    folder = Path(__file__).resolve().parents[1] / package
    choices = {
        p.stem[: -len(suffix) - 1].lower(): p.stem
        for p in folder.glob(f"*_{suffix}.py")
        if not (exclude_suffix and p.stem.endswith(f"_{exclude_suffix}"))
    }
    key = name.lower()
    if key not in choices:
        raise UserError(f"unknown {flag} {name!r}; choose one of: {', '.join(sorted(choices)) or '(none)'}")
    module = importlib.import_module(f"{package}.{choices[key]}")
    wanted = (key + suffix).replace("_", "").lower()
    for cls_name, cls in inspect.getmembers(module, inspect.isclass):
        if cls_name.replace("_", "").lower() == wanted and cls.__module__ == module.__name__:
            return cls
    raise UserError(f"{package}/{choices[key]}.py defines no class named like {name}{suffix.title().replace('_', '')}")


def add_flag_once(parser, *names, **kwargs) -> argparse.Action | None:
    """``parser.add_argument(*names, **kwargs)`` unless a flag of one of those names exists already; returns the new
    action, or None. ``parser`` may be an argument group. The one flag helper of the option setters: the model's,
    the dataset's and the options' own may offer the same flag, and the first definition wins."""
    if any(name in parser._option_string_actions for name in names):
        return None
    return parser.add_argument(*names, **kwargs)
