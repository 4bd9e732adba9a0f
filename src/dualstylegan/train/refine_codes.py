"""Refinement of the extrinsic style codes (paper §3.3, "we further refine the extrinsic style codes"; SPEC.md §7,
the reference's ``refine_exstyle.py``).

After stage III the fine-tuned DualStyleGAN G is fixed and each exemplar's Z+ extrinsic code z_e⁺ is optimised so
that G(z_i⁺, z_e⁺) rebuilds the exemplar S better: Adam over the color rows (``lr_color``), the structure rows
(``lr_structure``) and fresh noise maps (lr 0.1), constant learning rates, 100 iterations, loss
LPIPS(G↓256, S) + contextual loss on VGG19 relu3_1 (band width 0.2) + 1e5·noise regularisation; the noise maps are
re-normalised after every step. The intrinsic code z_i⁺ and G are not changed. The result is the style's
``refined_exstyle_code.npy``, which the sampler and inference use in place of ``exstyle_code.npy``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ..codes import CodeBank
from ..losses import CONTEXTUAL_LAYER, LOSS_SIZE, pool_to, vgg_features
from .destylize import (NOISE_WEIGHT, ImageInput, LossFn, StyleImages, as_image_batch, fresh_noise, frozen,
                        module_device, record_path)

log = logging.getLogger(__name__)

REFINE_ITERATIONS = 100
#: The README's color learning rate (the reference's argparse default is 0.01).
LR_COLOR = 0.1
LR_STRUCTURE = 0.005
LR_NOISE = 0.1
CONTEXTUAL_WEIGHT = 1.0
REFINED_NAME = "refined_exstyle_code.npy"


def _relu3_1(vgg: Callable, x: torch.Tensor) -> torch.Tensor:
    """The contextual loss's VGG19 features (relu3_1) of ``x``."""
    return vgg_features(vgg, x, CONTEXTUAL_LAYER + 1)[CONTEXTUAL_LAYER]


def _code(bank: Mapping[str, torch.Tensor] | CodeBank, name: str, what: str) -> torch.Tensor:
    if name not in bank:
        raise KeyError(f"the {what} codes have no entry for {name!r}; give the banks of one destylization run.")
    t = torch.as_tensor(bank[name], dtype=torch.float32)
    return t[None] if t.ndim == 2 else t


def refine_code(generator: nn.Module, instyle: torch.Tensor, exstyle: torch.Tensor, image: torch.Tensor,
                lpips: LossFn, vgg: Callable | None, iterations: int = REFINE_ITERATIONS,
                lr_color: float = LR_COLOR, lr_structure: float = LR_STRUCTURE, *, lr_noise: float = LR_NOISE,
                contextual: LossFn | None = None, contextual_weight: float = CONTEXTUAL_WEIGHT,
                noise_weight: float = NOISE_WEIGHT, interp_weights: Sequence[float] | None = None,
                seed: int = 0) -> tuple[torch.Tensor, dict[str, list[float]], list[torch.Tensor]]:
    """Refine one exemplar's Z+ extrinsic code (1, L, 512) → (refined code on the CPU, loss history, visuals
    [S, G before, G after]).

    ``generator``: the fine-tuned :class:`~dualstylegan.nets.dualstylegan.DualStyleGAN` (fixed); it renders
    G([z_i⁺], map(z_e⁺), z_plus_latent=True, use_res=True) with ``interp_weights`` (default all ones, as the
    reference). Rows 0…res_index are structure rows, the rest color rows. ``contextual(x_feat, y_feat)`` defaults
    to :class:`dualstylegan.losses.ContextualLoss` (cosine, band width 0.2, on relu3_1); ``vgg`` None drops the
    contextual term.
    """
    from ..losses import noise_normalize_, noise_regularize

    if contextual is None and vgg is not None:
        from ..losses import ContextualLoss

        contextual = ContextualLoss()
    device = module_device(generator)
    n_structure = generator.res_index + 1
    instyle = instyle.to(device, torch.float32)
    exstyle = exstyle.to(device, torch.float32)
    if exstyle.ndim != 3 or exstyle.shape[1] != generator.n_latent or instyle.shape != exstyle.shape:
        raise ValueError(f"the codes must be Z+ codes (1, {generator.n_latent}, 512) for this generator, got "
                         f"{tuple(instyle.shape)} and {tuple(exstyle.shape)}")
    loss_size = min(LOSS_SIZE, generator.size)
    target = pool_to(as_image_batch(image).to(device), loss_size)
    history: dict[str, list[float]] = {k: [] for k in ("perceptual", "contextual", "noise", "loss")}

    with frozen(generator, lpips, vgg, contextual):
        real_feat = _relu3_1(vgg, target).detach() if vgg is not None else None
        structure = exstyle[:, :n_structure].clone().requires_grad_(True)
        color = exstyle[:, n_structure:].clone().requires_grad_(True)
        noises = [n.to(device).detach().requires_grad_(True) for n in fresh_noise(generator, seed)]
        optimizer = torch.optim.Adam([{"params": [color], "lr": lr_color},
                                      {"params": [structure], "lr": lr_structure},
                                      {"params": noises, "lr": lr_noise}])

        def render(noise) -> torch.Tensor:
            code = generator.map_extrinsic(torch.cat([structure, color], dim=1))
            img, _ = generator([instyle], code, z_plus_latent=True, use_res=True, noise=noise,
                               interp_weights=interp_weights)
            return pool_to(img, loss_size)

        before = None
        for _ in range(iterations):
            fake = render(noises)
            if before is None:
                before = fake.detach()
            l_perc = lpips(fake, target).sum()
            l_cx = (contextual(_relu3_1(vgg, fake), real_feat) if vgg is not None
                    else fake.new_zeros(()))
            l_noise = noise_regularize(noises)
            loss = l_perc + contextual_weight * l_cx + noise_weight * l_noise
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            noise_normalize_(noises)
            for key, value in (("perceptual", l_perc), ("contextual", l_cx), ("noise", l_noise), ("loss", loss)):
                history[key].append(float(torch.as_tensor(value).detach()))
        with torch.no_grad():
            after = render([n.detach() for n in noises])
            if before is None:
                before = after
    refined = torch.cat([structure, color], dim=1).detach().cpu()
    return refined, history, [t.detach().cpu().clamp(-1, 1) for t in (target, before, after)]


def refine_codes(generator: nn.Module, instyle: CodeBank | Mapping[str, torch.Tensor],
                 exstyle: CodeBank | Mapping[str, torch.Tensor], images: ImageInput, lpips: LossFn,
                 vgg: Callable | None, iterations: int = REFINE_ITERATIONS, lr_color: float = LR_COLOR,
                 lr_structure: float = LR_STRUCTURE, *, lr_noise: float = LR_NOISE, contextual: LossFn | None = None,
                 noise_weight: float = NOISE_WEIGHT, interp_weights: Sequence[float] | None = None,
                 out_dir: str | os.PathLike | None = None, seed: int = 0, progress: bool = True) -> CodeBank:
    """Refine every extrinsic code of ``exstyle`` (in its order) against its style image → the refined bank.

    ``images``: the style image folder (the files named by the bank's keys) or a dict name → (3, H, H) tensor.
    With ``out_dir``: writes ``out_dir/refined_exstyle_code.npy`` (the official layout) and a log row per exemplar
    in ``out_dir/log/refine/`` (S | G before | G after). Exemplar k's noise maps start from ``seed + k``.
    """
    from tqdm import tqdm

    source = StyleImages(images)
    names = list(exstyle)
    missing = [n for n in names if n not in source]
    if missing:
        raise KeyError(f"no style image for {len(missing)} exemplar(s) of the code bank, e.g. {missing[0]!r}; give "
                       "the folder the codes were made from.")
    refined: dict[str, torch.Tensor] = {}
    for k, name in enumerate(tqdm(names, desc="refining extrinsic codes", unit="code", disable=not progress)):
        code, history, visuals = refine_code(generator, _code(instyle, name, "intrinsic"),
                                             _code(exstyle, name, "extrinsic"), source[name], lpips, vgg,
                                             iterations, lr_color, lr_structure, lr_noise=lr_noise,
                                             contextual=contextual, noise_weight=noise_weight,
                                             interp_weights=interp_weights, seed=seed + k)
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


__all__ = ["LR_COLOR", "LR_NOISE", "LR_STRUCTURE", "REFINED_NAME", "REFINE_ITERATIONS", "refine_code",
           "refine_codes"]
