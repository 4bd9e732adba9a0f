"""The weight files of the loss networks and of training (FFHQ StyleGAN2, pSp encoder, VGG19, LPIPS, IR-SE50): where
each is published, where it is looked for, how it is downloaded, and loading the feature nets from them (the
pipeline's refinement uses LPIPS and VGG19 too) — or taking them as modules
(:class:`FeatureNets`, what tests and callers with their own networks pass).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DualStyleGANError

log = logging.getLogger(__name__)


class MissingWeightsError(DualStyleGANError, FileNotFoundError):
    """A weight file the recipe needs is not there; the message names it and says where to get it.

    ``line``: the file's entry in a list of several (:meth:`several`): the option and file name, where to get it,
    where it was looked for."""

    def __init__(self, message: str, line: str | None = None):
        super().__init__(message)
        self.line = line or message

    @classmethod
    def several(cls, errors: list[MissingWeightsError]) -> MissingWeightsError:
        """One error for several missing files: a first sentence, then one line per file."""
        head = (f"{len(errors)} weight files are missing: give each with its option, or put it in one of the "
                "folders named (--download fetches those that have a direct link).")
        return cls("\n".join([head, *("  " + e.line for e in errors)]))


# ------------------------------------------------------------------------------------------- weight files
@dataclass(frozen=True)
class WeightFile:
    key: str
    what: str          # in words
    names: tuple[str, ...]   # official file names, looked for in the search folders
    flag: str          # the CLI option
    source: str        # where to get it
    url: str | None = None   # a direct download (--download), None when there is none


WEIGHT_FILES: dict[str, WeightFile] = {w.key: w for w in (
    WeightFile("ffhq", "the FFHQ StyleGAN2 checkpoint", ("stylegan2-ffhq-config-f.pt",), "--ffhq",
               "rosinality's stylegan2-pytorch conversion with the discriminator, linked from "
               "https://github.com/williamyang1991/DualStyleGAN#pretrained-models"),
    WeightFile("encoder", "the pSp encoder", ("encoder.pt",), "--encoder",
               "the DualStyleGAN models (dualstylegan download cartoon fetches it, or "
               "https://huggingface.co/CVPR/DualStyleGAN/tree/main/models)"),
    WeightFile("vgg", "the VGG19 weights", ("vgg19-dcbb9e9d.pth",), "--vgg",
               "torchvision's ImageNet vgg19, https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
               "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"),
    WeightFile("lpips", "the LPIPS v0.1 linear layers", ("vgg.pth",), "--lpips",
               "the lpips package's lpips/weights/v0.1/vgg.pth (pip install lpips, or "
               "https://github.com/richzhang/PerceptualSimilarity/tree/master/lpips/weights/v0.1)",
               "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth"),
    WeightFile("lpips_vgg16", "the VGG16 weights of LPIPS", ("vgg16-397923af.pth",), "--lpips-vgg16",
               "torchvision's ImageNet vgg16, https://download.pytorch.org/models/vgg16-397923af.pth",
               "https://download.pytorch.org/models/vgg16-397923af.pth"),
    WeightFile("identity", "the IR-SE50 identity network", ("model_ir_se50.pth",), "--identity",
               "the pSp / DualStyleGAN pretrained models, linked from "
               "https://github.com/williamyang1991/DualStyleGAN#pretrained-models"),
)}


def _torch_hub_dir() -> Path:
    env = os.environ.get("TORCH_HOME")
    base = Path(env).expanduser() if env else Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "torch"
    return base / "hub" / "checkpoints"


def search_folders(key: str) -> list[Path]:
    """Where :func:`find_weights` looks for a weight file that was not given (in this order)."""
    from .hub import models_home

    home = models_home()
    if key == "lpips":
        folders = [home / "lpips" / "v0.1"]
        try:
            import importlib.util

            spec = importlib.util.find_spec("lpips")
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin:
            folders.insert(0, Path(spec.origin).parent / "weights" / "v0.1")
        return folders
    if key in ("vgg", "lpips_vgg16"):
        return [_torch_hub_dir(), home / "models", home]
    return [home / "models", home]


def download(spec: WeightFile) -> Path | None:
    """Fetch a weight file that has a direct URL (or encoder.pt from the Hugging Face Hub); None when impossible."""
    if spec.key == "encoder":
        from .hub import HUB_REPO, HUB_REVISION, Hub

        return Hub(HUB_REPO, HUB_REVISION, None, False).get("models/encoder.pt")
    if spec.url is None:
        return None
    import torch

    folder = search_folders(spec.key)[-1] if spec.key == "lpips" else _torch_hub_dir()
    target = folder / spec.names[0]
    folder.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s", spec.what, spec.url)
    try:
        torch.hub.download_url_to_file(spec.url, os.fspath(target), progress=True)
    except Exception as exc:  # noqa: BLE001 - any failure: the file stays missing and the message says so
        log.warning("could not download %s: %s", spec.url, exc)
        return None
    return target


def find_weights(key: str, given: str | os.PathLike | None = None, *, download: bool = False) -> Path:
    """The path of weight file ``key`` (see :data:`WEIGHT_FILES`): ``given`` when set, else the first of its official
    names in :func:`search_folders` (encoder.pt also from the Hugging Face cache), else — with ``download`` — a
    download where one exists. Raises :class:`MissingWeightsError` with one sentence otherwise."""
    spec = WEIGHT_FILES[key]
    if given is not None:
        path = Path(given).expanduser()
        if path.is_file():
            return path
        raise MissingWeightsError(f"{spec.what[0].upper()}{spec.what[1:]} file {path} does not exist: give "
                                  f"{spec.flag} PATH to {spec.names[0]} ({spec.source}).",
                                  f"{spec.flag} {path}: no such file; it should be {spec.names[0]}, {spec.source}")
    for folder in search_folders(key):
        for name in spec.names:
            if (folder / name).is_file():
                return folder / name
    if key == "encoder":
        from .hub import HUB_REPO, HUB_REVISION, Hub

        hit = Hub(HUB_REPO, HUB_REVISION, None, True).cached("models/encoder.pt")
        if hit is not None:
            return hit
    if download:
        got = download(spec)
        if got is not None and Path(got).is_file():
            return Path(got)
    where = ", ".join(str(f) for f in search_folders(key))
    hint = " (or run with --download)" if spec.url or key == "encoder" else ""
    raise MissingWeightsError(f"Could not find {spec.what} ({spec.names[0]}): give {spec.flag} PATH or put it in "
                              f"{where}{hint}; it is {spec.source}.",
                              f"{spec.flag} {spec.names[0]}: {spec.source}; looked in {where}")


@dataclass
class FeatureNets:
    """Feature networks of the losses given as modules (tests inject random ones). Any left None is loaded from
    its weight file. ``vgg``: a :class:`~dualstylegan.nets.perceptual.VGG19Features`; ``lpips``: an
    :class:`~dualstylegan.nets.perceptual.LPIPS` or a callable (x, y) → (B,) distance; ``identity``: an
    :class:`~dualstylegan.nets.encoder.IdentityNet` or a callable (x, y) → identity loss."""

    vgg: Any = None
    lpips: Any = None
    identity: Any = None


def load_lpips(lin: str | os.PathLike, vgg16: str | os.PathLike | None = None):
    """LPIPS from the lpips package's ``vgg.pth`` (the linear layers) and torchvision's ``vgg16`` weights — or from
    one full LPIPS state dict (backbone included), which needs no ``vgg16``."""
    from .checkpoints import CheckpointError, load_torch_file
    from .nets.perceptual import LPIPS

    state = load_torch_file(lin)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{Path(lin).name} is not an LPIPS weights file (vgg.pth of the lpips package).")
    net = LPIPS()
    if any(str(k).startswith("net.") for k in state):
        net.load_state_dict(dict(state))
        return net.eval()
    try:
        net.load_lin_state_dict(state)
    except KeyError as exc:
        raise CheckpointError(f"{Path(lin).name} is not the LPIPS v0.1 VGG file vgg.pth ({exc.args[0]}).") from None
    if vgg16 is None:
        raise MissingWeightsError(f"{Path(lin).name} holds LPIPS's linear layers only: give --lpips-vgg16 PATH to "
                                  f"vgg16-397923af.pth ({WEIGHT_FILES['lpips_vgg16'].source}).")
    net.net.load_state_dict(load_torch_file(vgg16))
    return net.eval()


def lpips_is_full(path: str | os.PathLike) -> bool:
    """Whether an LPIPS file holds the VGG16 backbone too (then no separate vgg16 file is needed)."""
    from .checkpoints import load_torch_file

    try:
        state = load_torch_file(path)
    except Exception:  # noqa: BLE001 - an unreadable file is reported when the step loads it
        return False
    return isinstance(state, Mapping) and any(str(k).startswith("net.") for k in state)


def load_vgg(vgg: Any, device: Any = None):
    """A VGG19Features from torchvision's ``vgg19`` weights file, or the given module / loss callable as is; a
    module goes to ``device`` (when given) in eval mode."""
    if isinstance(vgg, (str, os.PathLike)):
        from .checkpoints import load_torch_file
        from .nets.perceptual import VGG19Features

        net = VGG19Features()
        net.load_state_dict(load_torch_file(vgg))
        vgg = net
    import torch

    if isinstance(vgg, torch.nn.Module):
        vgg = (vgg.to(device) if device is not None else vgg).eval()
    return vgg


def load_id_loss(identity: Any):
    """The identity loss: ``model_ir_se50.pth`` or an :class:`IdentityNet` → ``losses.IdentityLoss``; a callable
    (fake, content) → loss as is; None stays None."""
    from .nets.encoder import IdentityNet

    if identity is None:
        return None
    if isinstance(identity, (str, os.PathLike)):
        from .official import load_identity_net

        identity = load_identity_net(identity)
    if isinstance(identity, IdentityNet):
        from .losses import IdentityLoss

        return IdentityLoss(identity)
    if callable(identity):
        return identity
    raise TypeError(f"id_loss must be a model_ir_se50.pth path, an IdentityNet or a callable, not {type(identity)}")


def load_feature_net(key: str, nets: FeatureNets, weights) -> Any:
    """Feature net ``key`` ('vgg', 'lpips' or 'identity'): the module in ``nets``, else loaded from its weight file
    (``weights(key)`` → path). The identity net comes as the identity loss (x, y) → loss."""
    given = getattr(nets, key)
    if key == "vgg":
        return given if given is not None else load_vgg(os.fspath(weights("vgg")))
    if key == "lpips":
        if given is not None:
            return given
        lin = weights("lpips")
        return load_lpips(lin, None if lpips_is_full(lin) else weights("lpips_vgg16"))
    if key == "identity":
        return load_id_loss(given if given is not None else os.fspath(weights("identity")))
    raise KeyError(key)


__all__ = ["WEIGHT_FILES", "FeatureNets", "MissingWeightsError", "WeightFile", "download", "find_weights",
           "load_feature_net", "load_lpips", "lpips_is_full", "search_folders"]
