"""The ``refine-codes`` step: refine every extrinsic style code of a style against its exemplar (paper §3.4, "we
further refine the extrinsic style codes"; the reference's ``refine_exstyle.py``).

After stage III the fine-tuned DualStyleGAN G is fixed and each exemplar's Z+ extrinsic code is optimised by
:func:`dualstylegan.refine.refine_extrinsic` (LPIPS + contextual loss on VGG19 relu3_1 + noise regularisation,
separate learning rates for the structure and color rows, noise optimisation; the same function refines an
image exemplar at inference). The result is the style's ``refined_exstyle_code.npy``, which the sampler and
inference use in place of ``exstyle_code.npy``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ..codes import CodeBank
from ..refine import LR_COLOR, LR_NOISE, LR_STRUCTURE, NOISE_WEIGHT, REFINE_ITERATIONS, LossFn, refine_extrinsic
from .destylize import ImageInput, StyleImages, record_path

log = logging.getLogger(__name__)

REFINED_NAME = "refined_exstyle_code.npy"


def _code(bank: Mapping[str, torch.Tensor] | CodeBank, name: str, what: str) -> torch.Tensor:
    if name not in bank:
        raise KeyError(f"the {what} codes have no entry for {name!r}; give the banks of one destylization run.")
    t = torch.as_tensor(bank[name], dtype=torch.float32)
    return t[None] if t.ndim == 2 else t


def refine_codes(generator: nn.Module, instyle: CodeBank | Mapping[str, torch.Tensor],
                 exstyle: CodeBank | Mapping[str, torch.Tensor], images: ImageInput, lpips: LossFn,
                 vgg: Callable | None, iterations: int = REFINE_ITERATIONS, lr_color: float = LR_COLOR,
                 lr_structure: float = LR_STRUCTURE, *, lr_noise: float = LR_NOISE, contextual: LossFn | None = None,
                 noise_weight: float = NOISE_WEIGHT, interp_weights: Sequence[float] | None = None,
                 out_dir: str | os.PathLike | None = None, seed: int = 0, progress: bool = True) -> CodeBank:
    """Refine every extrinsic code of ``exstyle`` (in its order) against its style image → the refined bank.

    ``images``: the style image folder (the files named by the bank's keys) or a dict name → (3, H, H) tensor.
    With ``out_dir``: writes ``out_dir/refined_exstyle_code.npy`` (the official layout) and a log row per exemplar
    in ``out_dir/log/refine/`` (S | G before | G after). Each exemplar is refined with the global generators seeded by
    ``seed`` and its name, its noise maps drawn from the same (:func:`~.seeding.seeded`).
    """
    from tqdm import tqdm

    from .seeding import seeded

    source = StyleImages(images)
    names = list(exstyle)
    missing = [n for n in names if n not in source]
    if missing:
        raise KeyError(f"no style image for {len(missing)} exemplar(s) of the code bank, e.g. {missing[0]!r}; give "
                       "the folder the codes were made from.")
    refined: dict[str, torch.Tensor] = {}
    for name in tqdm(names, desc="refining extrinsic codes", unit="code", disable=not progress):
        with seeded(seed, "refine", name) as code_seed:
            code, history, visuals = refine_extrinsic(generator, _code(instyle, name, "intrinsic"),
                                                      _code(exstyle, name, "extrinsic"), source[name], lpips, vgg,
                                                      iterations, lr_color, lr_structure, lr_noise=lr_noise,
                                                      contextual=contextual, noise_weight=noise_weight,
                                                      interp_weights=interp_weights, seed=code_seed)
        refined[name] = code
        if history["loss"]:
            log.debug("%s: loss %.4f → %.4f", name, history["loss"][0], history["loss"][-1])
        if out_dir is not None:
            from ..images import make_grid, save_image

            path = record_path(Path(out_dir) / "log" / "refine", name).with_suffix(".png")
            save_image(make_grid(visuals, nrow=len(visuals)), path, overwrite=True)
    bank = CodeBank(refined, source=REFINED_NAME)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        bank.save(Path(out_dir) / REFINED_NAME)
    return bank


__all__ = ["LR_COLOR", "LR_NOISE", "LR_STRUCTURE", "REFINED_NAME", "REFINE_ITERATIONS", "refine_codes"]
