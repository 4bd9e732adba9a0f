"""What the pipeline takes: the forms of a photo or an exemplar image, seeds, and the feature networks that refine=N
finds on this machine (:class:`dualstylegan.pipeline.StyleTransferPipeline`). No torch import at import time."""
from __future__ import annotations

import logging
import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from .errors import DualStyleGANError

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

#: What the pipeline takes as a photo or an exemplar image: a file, a PIL image, an (H, W, 3) NumPy array (uint8,
#: or float in [0, 1]) or an image tensor (1, 3, H, W) / (3, H, W) in [−1, 1]. A tensor is taken as it is (an
#: aligned face); the others are prepared by :mod:`dualstylegan.faces` first.
ImageInput = Union[str, os.PathLike, "Image.Image", np.ndarray, "torch.Tensor"]


class OptionError(DualStyleGANError, ValueError):
    """An impossible option of a call: no portraits to draw, a blend of one frame, refining a code-bank exemplar,
    a seed out of range, an array that is not an image."""


#: The largest seed: torch's generators take 64-bit seeds.
MAX_SEED = 2**64 - 1


def check_seed(seed) -> int:
    """A usable seed: a whole number from 0 to :data:`MAX_SEED` (torch's generators take 64 bits)."""
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise OptionError(f"the seed must be a whole number from 0 to 2**64 - 1, got {seed!r}")
    return int(seed)


def as_photo(image):
    """A NumPy array (H, W, 3 or 4, or H, W; uint8, or float in [0, 1]) → PIL image; files and PIL images as they are."""
    if isinstance(image, np.ndarray):
        from PIL import Image

        a = image
        if a.dtype != np.uint8:
            a = np.clip(np.rint(np.nan_to_num(a.astype(np.float64)) * (255.0 if a.max(initial=0) <= 1.0 else 1.0)),
                        0, 255).astype(np.uint8)
        if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[-1] not in (3, 4):
            a = a.transpose(1, 2, 0)  # channels first
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (1, 3, 4)):
            raise OptionError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
        return Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a).convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        return Path(image)
    return image


def local_feature_net(key: str):
    """LPIPS or VGG19 from weight files already on this machine, else None (nothing is downloaded)."""
    from .weight_files import FeatureNets, find_weights, load_feature_net

    try:
        return load_feature_net(key, FeatureNets(), lambda k: find_weights(k))
    except Exception as e:  # noqa: BLE001 - missing or unreadable: refine runs without it and says so
        log.debug("no %s weights for refine: %s", key, e)
        return None


__all__ = ["MAX_SEED", "ImageInput", "OptionError", "as_photo", "check_seed", "local_feature_net"]
