"""Latent optimisation of a style code against an image (paper §3.4, "we further refine the extrinsic style codes";
the reference's ``refine_exstyle.py``) — one implementation for training's ``refine-codes`` step and for
:meth:`StyleTransferPipeline.transfer(..., refine=N) <dualstylegan.pipeline.StyleTransferPipeline.transfer>`.

:func:`refine_extrinsic`: the DualStyleGAN G is fixed and an exemplar's Z+ extrinsic code z_e⁺ is optimised so that
G(z_i⁺, z_e⁺) rebuilds the exemplar S: Adam over the color rows (``lr_color``), the structure rows
(``lr_structure``) and fresh noise maps (``lr_noise``), constant learning rates; loss
LPIPS(G↓256, S) + contextual loss on VGG19 relu3_1 (band width 0.2) + 1e5·noise regularisation, the noise maps
re-normalised after every step. The intrinsic code and G are not changed; the noise maps are dropped at the end.

:func:`fit_intrinsic` (beyond the reference): optimise an intrinsic code so that the plain generator reconstructs a
face more closely. The helpers here (:func:`frozen`, :func:`fresh_noise`, …) are those facial destylization
(:mod:`dualstylegan.train.destylize`) shares.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .losses import CONTEXTUAL_LAYER, LOSS_SIZE, pool_to, vgg_features

#: ``refine_exstyle.py``'s recipe: 100 iterations, Adam at constant learning rates.
REFINE_ITERATIONS = 100
#: The reference README's color learning rate (its argparse default is 0.01).
LR_COLOR = 0.1
LR_STRUCTURE = 0.005
LR_NOISE = 0.1
CONTEXTUAL_WEIGHT = 1.0
#: Weight of the noise-map regulariser (StyleGAN2's projector; also destylization's).
NOISE_WEIGHT = 1e5
#: :func:`fit_intrinsic`'s learning rate.
LR_INTRINSIC = 0.01

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------------------- helpers
def as_image_batch(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """(3, H, W) or (1, 3, H, W) float in [−1, 1] → (1, 3, H, W) float32; a square image is required."""
    t = torch.as_tensor(image)
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[0] != 1 or t.shape[1] != 3 or t.shape[2] != t.shape[3]:
        raise ValueError(f"the style image {name!r} must be one square RGB tensor (3, H, H) or (1, 3, H, H) in "
                         f"[-1, 1], got shape {tuple(t.shape)}")
    return t.to(torch.float32)


@contextlib.contextmanager
def frozen(*modules: object) -> Iterator[None]:
    """Eval mode and no parameter gradients for the given modules (non-modules are ignored); restored on exit."""
    saved = []
    for m in modules:
        if isinstance(m, nn.Module):
            saved.append((m, m.training, [(p, p.requires_grad) for p in m.parameters()]))
            m.eval()
            m.requires_grad_(False)
    try:
        yield
    finally:
        for m, training, flags in saved:
            m.train(training)
            for p, flag in flags:
                p.requires_grad_(flag)


def module_device(*modules: object) -> torch.device:
    for m in modules:
        if isinstance(m, nn.Module):
            for t in (*m.parameters(), *m.buffers()):
                return t.device
    return torch.device("cpu")


def fresh_noise(generator: nn.Module, seed: int) -> list[torch.Tensor]:
    """N(0, 1) noise maps of ``generator``'s shapes (drawn from ``seed``), as leaf tensors that require grad."""
    g = generator.generator if hasattr(generator, "generator") else generator
    rng = torch.Generator().manual_seed(int(seed))
    return [n.detach().clone().requires_grad_(True) for n in g.make_noise(rng)]


def _dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def relu3_1(vgg: Callable, x: torch.Tensor) -> torch.Tensor:
    """The contextual loss's VGG19 features (relu3_1) of ``x``."""
    return vgg_features(vgg, x, CONTEXTUAL_LAYER + 1)[CONTEXTUAL_LAYER]


def _reconstruction(lpips: LossFn | None, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS(x, y) summed over the batch; the mean squared error when there is no LPIPS network."""
    return lpips(x, y).sum() if lpips is not None else F.mse_loss(x, y)


# ------------------------------------------------------------------------------------------- extrinsic
def refine_extrinsic(generator: nn.Module, intrinsic: torch.Tensor, extrinsic: torch.Tensor, image: torch.Tensor,
                     lpips: LossFn | None, vgg: Callable | None, iterations: int = REFINE_ITERATIONS,
                     lr_color: float = LR_COLOR, lr_structure: float = LR_STRUCTURE, *, lr_noise: float = LR_NOISE,
                     contextual: LossFn | None = None, contextual_weight: float = CONTEXTUAL_WEIGHT,
                     noise_weight: float = NOISE_WEIGHT, interp_weights: Sequence[float] | None = None,
                     seed: int = 0) -> tuple[torch.Tensor, dict[str, list[float]], list[torch.Tensor]]:
    """Refine one exemplar's Z+ extrinsic code (1, L, 512) against its image S (``refine_exstyle.py``, §3.4) →
    (refined code on the CPU, loss history, visuals [S, G before, G after]).

    ``generator``: a :class:`~dualstylegan.nets.dualstylegan.DualStyleGAN` (kept fixed); it renders
    G([z_i⁺], map(z_e⁺), z_plus_latent=True, use_res=True) with ``interp_weights`` (default all ones, as the
    reference). The structure rows (``config.structure_rows``) move at ``lr_structure``, the color rows at
    ``lr_color``, fresh noise maps (drawn from ``seed``) at ``lr_noise``. ``lpips(x, y)``: the LPIPS distance — the
    reference's loss; None uses the mean squared error instead (a caller without the LPIPS weights). ``vgg``: a
    VGG19Features for the contextual loss (``contextual(x_feat, y_feat)``, default
    :class:`~dualstylegan.losses.ContextualLoss`, cosine, band width 0.2, on relu3_1); None drops that term.
    Runs with gradients even inside ``torch.no_grad()``.
    """
    from .losses import noise_normalize_, noise_regularize

    if contextual is None and vgg is not None:
        from .losses import ContextualLoss

        contextual = ContextualLoss()
    device, dtype = module_device(generator), _dtype(generator)
    n_structure = generator.config.n_structure
    intrinsic = intrinsic.to(device, dtype)
    extrinsic = extrinsic.to(device, dtype)
    if extrinsic.ndim != 3 or extrinsic.shape[1] != generator.n_latent or intrinsic.shape != extrinsic.shape:
        raise ValueError(f"the codes must be Z+ codes (1, {generator.n_latent}, 512) for this generator, got "
                         f"{tuple(intrinsic.shape)} and {tuple(extrinsic.shape)}")
    loss_size = min(LOSS_SIZE, generator.size)
    target = pool_to(as_image_batch(image).to(device, dtype), loss_size)
    history: dict[str, list[float]] = {k: [] for k in ("perceptual", "contextual", "noise", "loss")}

    with frozen(generator, lpips, vgg, contextual), torch.enable_grad():
        real_feat = relu3_1(vgg, target).detach() if vgg is not None else None
        structure = extrinsic[:, :n_structure].clone().requires_grad_(True)
        color = extrinsic[:, n_structure:].clone().requires_grad_(True)
        noises = [n.to(device, dtype).detach().requires_grad_(True) for n in fresh_noise(generator, seed)]
        optimizer = torch.optim.Adam([{"params": [color], "lr": lr_color},
                                      {"params": [structure], "lr": lr_structure},
                                      {"params": noises, "lr": lr_noise}])

        def render(noise) -> torch.Tensor:
            code = generator.map_extrinsic(torch.cat([structure, color], dim=1))
            img, _ = generator([intrinsic], code, z_plus_latent=True, use_res=True, noise=noise,
                               interp_weights=interp_weights)
            return pool_to(img, loss_size)

        before = None
        for _ in range(iterations):
            fake = render(noises)
            if before is None:
                before = fake.detach()
            l_perc = _reconstruction(lpips, fake, target)
            l_cx = contextual(relu3_1(vgg, fake), real_feat) if vgg is not None else fake.new_zeros(())
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


# ------------------------------------------------------------------------------------------- intrinsic
def fit_intrinsic(generator: nn.Module, code: torch.Tensor, image: torch.Tensor, iterations: int,
                  lr: float = LR_INTRINSIC, *, wplus: bool = False, lpips: LossFn | None = None) -> torch.Tensor:
    """Optimise an intrinsic code (1, L, 512; Z+, or W+ with ``wplus``) so that the StyleGAN ``generator`` (the
    intrinsic path, stored noise) reconstructs ``image`` more closely → the code, detached (beyond the reference).

    Loss on 256² images: the mean squared error, plus the mean ``lpips(x, y)`` when an LPIPS network is given.
    Adam at ``lr``. Runs with gradients even inside ``torch.no_grad()``.
    """
    size = min(LOSS_SIZE, generator.size)
    target = F.adaptive_avg_pool2d(image.to(module_device(generator), _dtype(generator)), size)
    code = code.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([code], lr=lr)
    with frozen(generator, lpips), torch.enable_grad():
        for _ in range(iterations):
            rendered, _ = generator([code], z_plus_latent=not wplus, input_is_latent=wplus, randomize_noise=False)
            rendered = F.adaptive_avg_pool2d(rendered, size)
            loss = F.mse_loss(rendered, target)
            if lpips is not None:
                loss = loss + lpips(rendered, target).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return code.detach()


__all__ = ["CONTEXTUAL_WEIGHT", "LR_COLOR", "LR_INTRINSIC", "LR_NOISE", "LR_STRUCTURE", "NOISE_WEIGHT",
           "REFINE_ITERATIONS", "as_image_batch", "fit_intrinsic", "fresh_noise", "frozen", "module_device",
           "refine_extrinsic", "relu3_1"]
