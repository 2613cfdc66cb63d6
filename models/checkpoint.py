"""Loading and saving generator weights: upstream-compatible bare state_dicts, written atomically."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch

from util.errors import UserError

WRAPPER_KEYS = ("params", "params_ema", "state_dict", "model")  # BasicSR / Lightning-style wrappers
WIDTH_KEY = "shallow_feat1_r.0.weight"  # (ngf, 4, 3, 3): its first dimension is the generator width
_ORB_KEY = re.compile(r"^stage2_orsnet_t\.orb1\.body\.(\d+)\.")


def load_state_dict_file(path) -> dict[str, torch.Tensor]:
    """Read a checkpoint with ``weights_only=True``: a bare state_dict, ``{'params': ...}`` or ``{'state_dict': ...}``,
    with or without a ``module.`` prefix (DataParallel / DDP)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt or non-weights file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read checkpoint {path}: {first}") from None
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"checkpoint {path} does not hold a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


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


def atomic_torch_save(obj, path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename: a crash never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_generator_weights(net: torch.nn.Module, path) -> None:
    """Save a bare CPU state_dict (upstream-compatible, no ``module.`` prefix)."""
    net = getattr(net, "module", net)
    atomic_torch_save({k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, path)
