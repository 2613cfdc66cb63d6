"""Loading and saving generator weights: upstream-compatible bare state_dicts, written atomically."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from util.errors import UserError
from util.files import atomic_torch_save  # the one atomic save of weights (also imported from here)

WRAPPER_KEYS = ("params", "params_ema", "state_dict", "model")  # BasicSR / Lightning-style wrappers
WIDTH_KEY = "shallow_feat1_r.0.weight"  # (ngf, 4, 3, 3): its first dimension is the generator width
_ORB_KEY = re.compile(r"^stage2_orsnet_t\.orb1\.body\.(\d+)\.")
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")  # torch's weights-only refusal
# how torch.save's files begin: a zip archive (since PyTorch 1.6) or the legacy format's pickle (protocol 2+)
TORCH_FILE_MAGICS = (b"PK\x03\x04", b"\x80")
_HTML_START = re.compile(rb"^\s*(<!doctype html|<html|<head|<\?xml)", re.IGNORECASE)


def not_a_torch_file(path: Path, what: str) -> str | None:
    """Why ``path`` cannot be a torch.save file, judged from its first bytes (None where it may be one). A web page
    saved in place of the weights (a cloud drive's download or warning page) is named as such."""
    with open(path, "rb") as f:
        head = f.read(256)
    if head.startswith(TORCH_FILE_MAGICS):
        return None
    if _HTML_START.match(head):
        return (f"cannot read {what} {path}: it is a web page (HTML), not weights: the download saved the page (a "
                "cloud drive's download or warning page?) instead of the file; download the file itself again")
    shown = head[:16].decode("latin-1").encode("unicode_escape").decode("ascii")
    return (f"cannot read {what} {path}: not a PyTorch weights file (it begins with '{shown}', not a torch.save "
            "archive); give the .pth file that torch.save wrote")


def load_state_dict_file(path) -> dict[str, torch.Tensor]:
    """Read a checkpoint with ``weights_only=True``: a bare state_dict, ``{'params': ...}`` or ``{'state_dict': ...}``,
    with or without a ``module.`` prefix (DataParallel / DDP)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    obj = safe_torch_load(path)
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"checkpoint {path} does not hold a state_dict of tensors")
    bad = [k for k, v in obj.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UserError(
            f"checkpoint {path} holds NaN or infinite weights ({len(bad)} of {len(obj)} tensors, e.g. {bad[0]}): "
            "the run that saved it diverged; use an earlier checkpoint"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def safe_torch_load(path, what: str = "checkpoint"):
    """``torch.load(path, weights_only=True)`` on the CPU; every failure is one :class:`UserError` line naming the
    file. A file that holds Python objects (a pickled model, an optimizer of another library...) is refused as "not
    a plain weights file": we never suggest ``weights_only=False``, which would run whatever code the file holds."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise UserError(f"cannot read {what} {path}: the file is empty (0 bytes); copy it again")
        problem = not_a_torch_file(path, what)
        if problem:
            raise UserError(problem)
        return torch.load(path, map_location="cpu", weights_only=True)
    except UserError:
        raise
    except pickle.UnpicklingError as err:  # what the weights-only unpickler raises for anything but plain data
        found = _UNSAFE_GLOBAL.search(str(err))
        if found:
            raise UserError(
                f"cannot read {what} {path}: it is not a plain weights file (it holds the Python object "
                f"{found.group(1)}, which a safe load refuses; the file may be untrusted); load only weights saved "
                "with torch.save(net.state_dict(), path)"
            ) from None
        raise UserError(
            f"cannot read {what} {path}: not a plain PyTorch weights file, or corrupt; load only weights saved with "
            "torch.save(net.state_dict(), path)"
        ) from None
    except EOFError:
        raise UserError(f"cannot read {what} {path}: the file is truncated; copy it again") from None
    except OSError as err:
        raise UserError(f"cannot read {what} {path}: {err.strerror or err}") from None
    except Exception as err:  # torch raises many types for a corrupt file
        if "PytorchStreamReader" in str(err):  # a torn zip archive: long advice from miniz follows
            raise UserError(f"cannot read {what} {path}: the file is truncated or corrupt; copy it again") from None
        lines = [line for line in str(err).strip().splitlines() if "weights_only" not in line]
        raise UserError(f"cannot read {what} {path}: {lines[0] if lines else type(err).__name__}") from None


def infer_generator_shape(state_dict, path="checkpoint") -> tuple[int, int]:
    """(ngf, num_cab) of a CR3Net generator state_dict."""
    if WIDTH_KEY not in state_dict:
        raise UserError(f"{path} is not a CR3Net generator checkpoint (no key {WIDTH_KEY})")
    ngf = int(state_dict[WIDTH_KEY].shape[0])
    cab_ids = {int(m.group(1)) for k in state_dict if (m := _ORB_KEY.match(k))}
    num_cab = max(cab_ids) if cab_ids else 0  # body.0..num_cab-1 are DCABs, body.num_cab the closing conv
    return ngf, num_cab


def load_generator_weights(net: torch.nn.Module, path) -> None:
    """Load a generator checkpoint strictly, explaining a width or layout mismatch in one line."""
    state = load_state_dict_file(path)
    ngf, num_cab = infer_generator_shape(state, path)
    if (ngf, num_cab) != (net.ngf, net.num_cab):
        raise UserError(
            f"checkpoint {path} is a generator with --ngf {ngf} --num_cab {num_cab}, but the network was built with "
            f"--ngf {net.ngf} --num_cab {net.num_cab}: pass --ngf {ngf} --num_cab {num_cab} (or leave both out)"
        )
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise UserError(f"checkpoint {path} does not match the CR3Net generator: {'; '.join(parts)}")
    net.load_state_dict(state, strict=True)


def save_generator_weights(net: torch.nn.Module, path) -> None:
    """Save a bare CPU state_dict (upstream-compatible, no ``module.`` prefix)."""
    net = getattr(net, "module", net)
    atomic_torch_save({k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, path)
