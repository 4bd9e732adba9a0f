"""Fine-tune StyleGAN2 on the style images — the artistic generator g′ of facial destylization (paper §3.1; the
reference's ``finetune_stylegan.py``, rosinality's ``train.py`` recipe).

g′ starts from the FFHQ model and is trained on the few hundred style images with the StyleGAN2 recipe of the
reference's ``finetune_stylegan.py`` (rosinality ``train.py``, run with ``--augment``): non-saturating logistic
loss, lazy R1 (γ = 10 every 16 steps) and path-length regularisation (weight 2 every 4 steps on half the batch),
style mixing 0.9, Adam at 0.002 with the lazy-regularisation corrections, an EMA generator (decay 0.5^(32/10 000)
per step) and adaptive discriminator augmentation of both the real and the fake inputs of D (target 0.6).
:data:`FINETUNE_STYLEGAN_STEPS` = 600 iterations at batch 4 × 8 GPUs. Destylization
(:mod:`dualstylegan.train.destylize`) then reads ``finetune-000600.pt``'s ``g_ema`` as g′.

Deliberate differences from the reference: the augmentation is the full ADA pipeline with the paper's parameter
distributions and an exactly aligned warp (:mod:`dualstylegan.train.ada`, which lists where it differs from
``non_leaking.py``; ``augment_kwargs={"flavor": "non_leaking"}`` draws as that file does); the written file holds
``d`` besides ``g_ema``. The EMA decay is kept the reference's constant per step whatever the
batch, like every stage's (:data:`~.gan.EMA_DECAY`): scaled with the batch, one GPU's batch of 4 would leave g_ema
~85 % FFHQ weights after the 600 steps.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..nets.stylegan2 import Discriminator, Generator
from .gan import GANStage, mixing_noise
from .loop import LoopConfig, TrainLoop, as_networks

#: Iterations of the reference run (``--iter 600``; destylization reads ``finetune-000600.pt``).
FINETUNE_STYLEGAN_STEPS = 600


class FinetuneStyleGAN(GANStage):
    """g′: StyleGAN2 ``generator`` / ``discriminator`` (loaded from the FFHQ model by the caller) fine-tuned on style
    images. Networks ``g``, ``d``, ``g_ema`` (a copy of ``g`` unless given); optimizers ``g``, ``d``; every
    parameter of g trains and the EMA covers all of g. ``kwargs``: the schedule of :class:`~.gan.GANStage` (lr, r1,
    d_reg_every, path_regularize, g_reg_every, path_batch_shrink, mixing, augment, augment_p, ada_target, ada_kimg,
    ada_interval, ada_interval_images, ema_decay, augment_kwargs). The batch is D's real style images (B, 3, size, size).
    """

    name = "finetune_stylegan"

    def __init__(self, generator: Generator, discriminator: Discriminator, g_ema: Generator | None = None, *,
                 n_sample: int = 9, sample_seed: int = 0, **kwargs: Any):
        if generator.size != discriminator.config.size:
            raise ValueError(f"the generator makes {generator.size}² images but the discriminator reads "
                             f"{discriminator.config.size}²; load both from the same checkpoint.")
        super().__init__(generator, discriminator, g_ema, list(generator.parameters()), **kwargs)
        self.style_dim = generator.style_dim
        self.sample_z = torch.randn(n_sample, self.style_dim,
                                    generator=torch.Generator().manual_seed(sample_seed)).to(self.device)

    def _noise(self, n: int) -> list[torch.Tensor]:
        return mixing_noise(n, self.style_dim, self.mixing, self.device)

    # ------------------------------------------------------------------------------------ losses
    def d_loss(self, real: torch.Tensor, step: int):
        """Non-saturating logistic loss of D on augmented reals and augmented fakes."""
        real = self.d_real(real, step)
        with torch.no_grad():
            fake, _ = self.g(self._noise(real.shape[0]))
        return self.d_adversarial(real, fake)

    def g_loss(self, real: torch.Tensor, step: int):
        from ..losses import g_nonsaturating_loss

        fake, _ = self.g(self._noise(real.shape[0]))
        loss = g_nonsaturating_loss(self.d(self.aug(fake)))
        return loss, {"g": loss.item()}

    def path_loss(self, real: torch.Tensor, step: int):
        """Lazy path-length regularisation of g with respect to its W+ latents, on batch / path_batch_shrink
        samples."""
        fake, latents = self.g(self._noise(self.path_batch(real.shape[0])), return_latents=True)
        return self.path_length_penalty(fake, latents)

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
                      image_folder: str | os.PathLike, out_dir: str | os.PathLike,
                      steps: int = FINETUNE_STYLEGAN_STEPS, *, loop: LoopConfig | None = None,
                      size: int | None = None, resume: bool = True, name: str | None = None, hflip: bool = True,
                      **stage_kwargs: Any) -> Path:
    """Fine-tune the FFHQ StyleGAN2 on a folder of (prepared) style images; write ``out_dir/finetune-<name>.pt``.

    ``ffhq``: a rosinality checkpoint path (``stylegan2-ffhq-config-f.pt``), a ``(g, d)`` or ``(g, d, g_ema)``
    tuple of modules, or a mapping as returned by :func:`load_ffhq`. ``loop``: how the loop runs (:class:`LoopConfig`;
    its batch is per process — the reference runs 4 on each of 8 GPUs under ``torchrun``; on one GPU give
    ``batch_size=32, grad_accum=8`` for its total batch).
    ``size`` defaults to the generator's resolution (the images are centre-cropped/resized to it).
    ``name`` defaults to the zero-padded step count (``finetune-000600.pt``, the reference's name). The training
    checkpoint ``out_dir/checkpoint.pt`` makes a re-run resume exactly; samples go to ``out_dir/samples``.
    ``stage_kwargs`` go to :class:`FinetuneStyleGAN` (lr, r1, mixing, augment, ada_target, …).

    Returns the path of the written file: {'g_ema', 'd'} in the official layout (:func:`official.save_stylegan2`).
    """
    from ..official import save_stylegan2
    from .data import ImageFolderDataset

    nets = as_networks(ffhq, load_ffhq, "the FFHQ model")
    g, d, g_ema = nets["g"], nets["d"], nets["g_ema"]
    if size is not None and size != g.size:
        raise ValueError(f"the generator makes {g.size}² images; size={size} cannot be trained with it.")
    config = (loop or LoopConfig()).resolved(steps, out_dir)
    device = config.device
    g, d = g.to(device).train(), d.to(device).train()
    g_ema = g_ema.to(device) if g_ema is not None else None
    stage = FinetuneStyleGAN(g, d, g_ema, **stage_kwargs)
    for key in ("g", "d"):
        if f"{key}_optim" in nets:  # the reference resumes the optimizers when the file has them
            stage.opt[key].load_state_dict(nets[f"{key}_optim"])
    data = ImageFolderDataset(image_folder, g.size, hflip=hflip, device=device)
    trainer = TrainLoop(stage, data.fetch, len(data), config)
    trainer.run(resume=resume)
    target = config.out_dir / f"finetune-{name if name is not None else f'{steps:06d}'}.pt"
    if trainer.dist.main:
        save_stylegan2(target, stage.g_ema, stage.d)
    return target
