"""Stage I: fine-tune StyleGAN2 on the style images — the artistic generator g′ (paper §3.2, SPEC §7).

g′ starts from the FFHQ model and is trained on the few hundred style images with the StyleGAN2 recipe of the
reference's ``finetune_stylegan.py`` (rosinality ``train.py``): non-saturating logistic loss, lazy R1 (γ = 10 every
16 steps) and path-length regularisation (weight 2 every 4 steps on half the batch), style mixing 0.9, Adam at
0.002 with the lazy-regularisation corrections, an EMA generator, and adaptive discriminator augmentation of both
the real and the fake inputs of D (target 0.6). About 600 iterations at batch 4 × 8 GPUs. Destylization
(:mod:`dualstylegan.train.destylize`) then reads ``finetune-000600.pt``'s ``g_ema`` as g′.
"""
from __future__ import annotations

import copy
import os
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..nets.stylegan2 import Discriminator, Generator
from .augment import ADA
from .loop import GANStage, LoopConfig, TrainLoop, accumulate, default_device

#: Total batch of the reference run (4 per GPU × 8 GPUs): its EMA decay 0.5 ** (32 / 10_000) is this batch's.
REFERENCE_BATCH = 32


def mixing_noise(batch: int, style_dim: int, prob: float, device: torch.device) -> list[torch.Tensor]:
    """Intrinsic codes for one generator call: two z (style mixing, random inject index) with probability
    ``prob``, one otherwise — drawn per batch, as in the reference (python ``random`` for the coin)."""
    if prob > 0 and random.random() < prob:
        return list(torch.randn(2, batch, style_dim, device=device).unbind(0))
    return [torch.randn(batch, style_dim, device=device)]


def lazy_adam(params, lr: float, every: int) -> torch.optim.Adam:
    """Adam(lr·c, betas (0, 0.99^c)) with c = every / (every + 1): the lazy-regularisation correction of StyleGAN2
    (Karras et al. 2020, Appendix B) for a network whose regulariser runs every ``every`` steps."""
    c = every / (every + 1) if every > 0 else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(0 ** c, 0.99 ** c))


class FinetuneStyleGAN(GANStage):
    """g′: StyleGAN2 ``generator`` / ``discriminator`` (loaded from the FFHQ model by the caller) fine-tuned on style
    images. Networks ``g``, ``d``, ``g_ema`` (a copy of ``g`` unless given); optimizers ``g``, ``d``.

    ``batch`` is the number of images per step over all ranks; it sets the EMA decay 0.5 ** (batch / (ema_kimg·1000))
    (the reference's 0.5 ** (32 / 10 000) at its batch of 32). ``augment=False`` turns ADA off; ``augment_p > 0``
    fixes p instead of adapting it. The ADA controller follows the reference (rosinality ``AdaptiveAugment``):
    p moves by (images seen) / (ada_kimg·1000) every ``ada_interval`` steps.
    """

    name = "finetune_stylegan"

    def __init__(self, generator: Generator, discriminator: Discriminator, g_ema: Generator | None = None, *,
                 batch: int = REFERENCE_BATCH, lr: float = 0.002, r1: float = 10.0, d_reg_every: int = 16,
                 path_regularize: float = 2.0, g_reg_every: int = 4, path_batch_shrink: int = 2,
                 mixing: float = 0.9, augment: bool = True, augment_p: float = 0.0, ada_target: float = 0.6,
                 ada_kimg: float = 500, ada_interval: int = 8, ema_kimg: float = 10.0, n_sample: int = 9,
                 sample_seed: int = 0, augment_kwargs: Mapping[str, Any] | None = None):
        if generator.size != discriminator.config.size:
            raise ValueError(f"the generator makes {generator.size}² images but the discriminator reads "
                             f"{discriminator.config.size}²; load both from the same checkpoint.")
        self.g, self.d = generator, discriminator
        self.g_ema = g_ema if g_ema is not None else copy.deepcopy(generator)
        self.g_ema.eval().requires_grad_(False)
        self.device = next(generator.parameters()).device
        self.style_dim = generator.style_dim

        self.r1, self.d_reg_every = float(r1), int(d_reg_every)
        self.path_regularize, self.g_reg_every = float(path_regularize), int(g_reg_every)
        self.path_batch_shrink, self.mixing = int(path_batch_shrink), float(mixing)
        self.batch, self.ema_kimg = int(batch), float(ema_kimg)
        self.ema_decay = 0.5 ** (self.batch / (self.ema_kimg * 1000))
        self.opt = {"g": lazy_adam(self.g.parameters(), lr, self.g_reg_every if self.path_regularize > 0 else 0),
                    "d": lazy_adam(self.d.parameters(), lr, self.d_reg_every if self.r1 > 0 else 0)}

        augment_kwargs = dict(augment_kwargs or {})
        self.augment_enabled = bool(augment)
        self.fixed_p = float(augment_p)
        self.ada = (ADA(target=ada_target, speed_kimg=ada_kimg, interval=ada_interval, **augment_kwargs)
                    if augment and augment_p <= 0 else None)
        self.augment_kwargs = augment_kwargs
        self.mean_path_length: torch.Tensor | float = 0.0
        self.sample_z = torch.randn(n_sample, self.style_dim,
                                    generator=torch.Generator().manual_seed(sample_seed)).to(self.device)

    # ------------------------------------------------------------------------------------ contract
    def networks(self) -> dict[str, nn.Module]:
        return {"g": self.g, "d": self.d, "g_ema": self.g_ema}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.opt

    # ------------------------------------------------------------------------------------ augmentation
    def _noise(self, n: int) -> list[torch.Tensor]:
        return mixing_noise(n, self.style_dim, self.mixing, self.device)

    # ------------------------------------------------------------------------------------ losses
    def d_loss(self, real: torch.Tensor, step: int):
        """Non-saturating logistic loss of D on augmented reals and augmented fakes."""
        from ..losses import d_logistic_loss

        real = real.to(self.device)
        with torch.no_grad():
            fake, _ = self.g(self._noise(real.shape[0]))
        real_aug, fake_aug = self.aug(real), self.aug(fake)
        fake_pred, real_pred = self.d(fake_aug), self.d(real_aug)
        loss = d_logistic_loss(real_pred, fake_pred)
        if self.ada is not None:
            self.ada.accumulate(real_pred)
        return loss, {"d": loss.item(), "real_score": real_pred.mean().item(), "fake_score": fake_pred.mean().item()}

    def r1_loss(self, real: torch.Tensor, step: int):
        """Lazy R1 on the (un-augmented) reals: γ/2 · R1 · every (+ 0·D(real)[0], so every output is used)."""
        from ..losses import d_r1_loss

        real = real.to(self.device).detach().requires_grad_(True)
        real_pred = self.d(self.aug(real))
        r1 = d_r1_loss(real_pred, real)
        loss = self.r1 / 2 * r1 * self.d_reg_every + 0 * real_pred.reshape(-1)[0]
        return loss, {"r1": r1.item()}

    def g_loss(self, real: torch.Tensor, step: int):
        from ..losses import g_nonsaturating_loss

        fake, _ = self.g(self._noise(real.shape[0]))
        loss = g_nonsaturating_loss(self.d(self.aug(fake)))
        return loss, {"g": loss.item()}

    def path_loss(self, real: torch.Tensor, step: int):
        """Lazy path-length regularisation on batch / path_batch_shrink samples: weight · every · penalty."""
        from ..losses import g_path_regularize

        n = max(1, real.shape[0] // max(self.path_batch_shrink, 1))
        fake, latents = self.g(self._noise(n), return_latents=True)
        penalty, mean, lengths = g_path_regularize(fake, latents, self.mean_path_length)
        self.mean_path_length = mean.detach() if isinstance(mean, torch.Tensor) else mean
        loss = self.path_regularize * self.g_reg_every * penalty
        if self.path_batch_shrink:
            loss = loss + 0 * fake[0, 0, 0, 0]
        return loss, {"path": penalty.item(), "path_length": lengths.mean().item(),
                      "mean_path_length": float(self.mean_path_length)}

    # ------------------------------------------------------------------------------------ after a step
    def after_step(self, step: int) -> dict[str, float]:
        accumulate(self.g_ema, self.g, self.ema_decay)
        logs = self.ada.step() if self.ada is not None else {}
        if self.augment_enabled and self.ada is None:
            logs = {"ada_p": self.fixed_p}
        return logs

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        """g_ema on the fixed codes, with its stored noise (touches no random generator)."""
        image, _ = self.g_ema([self.sample_z], randomize_noise=False)
        return image


# ------------------------------------------------------------------------------------------- one call
def load_ffhq(path: str | os.PathLike) -> dict[str, Any]:
    """The networks of a rosinality StyleGAN2 checkpoint for fine-tuning: {'g', 'd', 'g_ema', 'g_optim'?,
    'd_optim'?}. ``g`` is the file's ``'g'`` when it has one (else a copy of ``'g_ema'``); ``'d'`` is required."""
    from ..official import load_training_checkpoint

    return load_training_checkpoint(path, what="a StyleGAN2 checkpoint",
                                    no_discriminator="use the rosinality stylegan2-ffhq-config-f.pt (converted "
                                                     "with --disc).")


def finetune_stylegan(ffhq: str | os.PathLike | Sequence[nn.Module] | Mapping[str, Any],
                      image_folder: str | os.PathLike, out_dir: str | os.PathLike, steps: int = 600,
                      batch: int = 4, *, size: int | None = None, resume: bool = True, name: str | None = None,
                      device: str | None = None, seed: int = 0, grad_accum: int = 1, amp: bool = False,
                      checkpoint_every: int = 100, sample_every: int = 100, log_every: int = 10,
                      progress: bool = True, hflip: bool = True, tensorboard: bool = True,
                      **stage_kwargs: Any) -> Path:
    """Fine-tune the FFHQ StyleGAN2 on a folder of (prepared) style images; write ``out_dir/finetune-<name>.pt``.

    ``ffhq``: a rosinality checkpoint path (``stylegan2-ffhq-config-f.pt``), a ``(g, d)`` or ``(g, d, g_ema)``
    tuple of modules, or a mapping as returned by :func:`load_ffhq`. ``batch`` is per process (the reference runs
    4 on each of 8 GPUs under ``torchrun``; on one GPU give ``batch=32, grad_accum=8`` for its total batch).
    ``size`` defaults to the generator's resolution (the images are centre-cropped/resized to it).
    ``name`` defaults to the zero-padded step count (``finetune-000600.pt``, the reference's name). The training
    checkpoint ``out_dir/checkpoint.pt`` makes a re-run resume exactly; samples go to ``out_dir/samples``.
    ``stage_kwargs`` go to :class:`FinetuneStyleGAN` (lr, r1, mixing, augment, ada_target, …).

    Returns the path of the written file: {'g_ema', 'd'} in the official layout (:func:`official.save_stylegan2`).
    """
    from ..official import save_stylegan2
    from .data import ImageFolderDataset

    if isinstance(ffhq, (str, os.PathLike)):
        nets = load_ffhq(ffhq)
    elif isinstance(ffhq, Mapping):
        nets = dict(ffhq)
    else:
        mods = list(ffhq)
        if len(mods) not in (2, 3):
            raise ValueError("give the FFHQ model as a checkpoint path, (g, d) or (g, d, g_ema)")
        nets = {"g": mods[0], "d": mods[1], "g_ema": mods[2] if len(mods) == 3 else None}
    g, d, g_ema = nets["g"], nets["d"], nets.get("g_ema")
    if size is not None and size != g.size:
        raise ValueError(f"the generator makes {g.size}² images; size={size} cannot be trained with it.")
    device = device or default_device()
    g, d = g.to(device).train(), d.to(device).train()
    g_ema = g_ema.to(device) if g_ema is not None else None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    stage = FinetuneStyleGAN(g, d, g_ema, batch=batch * world, **stage_kwargs)
    for key in ("g", "d"):
        if f"{key}_optim" in nets:  # the reference resumes the optimizers when the file has them
            stage.opt[key].load_state_dict(nets[f"{key}_optim"])
    data = ImageFolderDataset(image_folder, g.size, hflip=hflip, device=device)
    out = Path(out_dir)
    config = LoopConfig(steps=steps, batch_size=batch, out_dir=out, seed=seed, grad_accum=grad_accum, amp=amp,
                        checkpoint_every=checkpoint_every, sample_every=sample_every, log_every=log_every,
                        progress=progress, device=device, extra={"tensorboard": tensorboard})
    loop = TrainLoop(stage, data.fetch, len(data), config)
    loop.run(resume=resume)
    target = out / f"finetune-{name if name is not None else f'{steps:06d}'}.pt"
    if loop.dist.main:
        save_stylegan2(target, stage.g_ema, stage.d)
    return target
