"""What the three GAN stages share (g′ fine-tuning, DualStyleGAN pre-training and fine-tuning): the StyleGAN2 schedule
of rosinality's ``train.py``, which the reference's ``finetune_stylegan.py``, ``pretrain_dualstylegan.py`` and
``finetune_dualstylegan.py`` all copy — :class:`GANStage`, a :class:`~dualstylegan.train.loop.Stage` of the one loop.
"""
from __future__ import annotations

import copy
import random
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .loop import Phase, Stage, accumulate


#: EMA decay per step of every stage's ``g_ema``: the reference's ``accumulate(g_ema, g, 0.5 ** (32 / (10 * 1000)))``
#: in finetune_stylegan.py, pretrain_dualstylegan.py and finetune_dualstylegan.py alike — a constant per step
#: whatever the batch: a half-life of 312.5 steps, short enough for the 600-step g′ run and the 1 500-step stage III.
EMA_DECAY = 0.5 ** (32 / 10_000)


def lazy_adam(params, lr: float, every: int) -> torch.optim.Adam:
    """Adam(lr·c, betas (0, 0.99^c)) with c = every / (every + 1): the lazy-regularisation correction of StyleGAN2
    (Karras et al. 2020, Appendix B) for a network whose regulariser runs every ``every`` steps (0: none)."""
    c = every / (every + 1) if every > 0 else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(0 ** c, 0.99 ** c))


def mixing_noise(batch: int, style_dim: int, prob: float, device: torch.device) -> list[torch.Tensor]:
    """Intrinsic codes for one generator call: two z (style mixing, random inject index) with probability
    ``prob``, one otherwise — drawn per batch, as in the reference (python ``random`` for the coin)."""
    if prob > 0 and random.random() < prob:
        return list(torch.randn(2, batch, style_dim, device=device).unbind(0))
    return [torch.randn(batch, style_dim, device=device)]


class GANStage(Stage):
    """A stage with the StyleGAN2 schedule (rosinality ``train.py``, which all three of the reference's GAN stages
    copy): D loss, lazy R1 (γ ``r1`` every ``d_reg_every`` steps), G loss, lazy path-length regularisation
    (``path_regularize`` every ``g_reg_every`` steps on batch / ``path_batch_shrink`` samples), Adam with the lazy
    corrections (:func:`lazy_adam`) over ``g_params`` and D, (adaptive) discriminator augmentation of D's real and
    fake inputs, and an EMA ``g_ema`` (a copy of ``g`` unless given) updated after every step by
    :meth:`update_ema` with ``ema_decay``.

    ``augment=False`` turns augmentation off; ``augment_p > 0`` fixes p instead of adapting it. Augmentation is
    the full ADA pipeline (:mod:`dualstylegan.train.ada`: Karras et al. 2020's 12 transforms, one warp, one color
    matrix; ``augment_kwargs`` set strengths, ``flavor``, ``blit``). Its controller follows the reference
    (``non_leaking.AdaptiveAugment(0.6, 500k, 8)``): once ``ada_interval`` steps and ``ada_interval_images`` real
    predictions have gone by, p moves by (predictions) / (ada_kimg·1000) toward r_t = ``ada_target``.
    ``mean_path_length`` and the ADA state are checkpointed.

    Subclasses define :meth:`d_loss`, :meth:`g_loss` and :meth:`path_loss` (with :meth:`d_adversarial`,
    :meth:`path_length_penalty`); :meth:`d_real` says which images of a batch are D's reals (for R1).
    """

    def __init__(self, g: nn.Module, d: nn.Module, g_ema: nn.Module | None, g_params: Sequence[nn.Parameter], *,
                 lr: float = 0.002, r1: float = 10.0, d_reg_every: int = 16, path_regularize: float = 2.0,
                 g_reg_every: int = 4, path_batch_shrink: int = 2, mixing: float = 0.9, augment: bool = True,
                 augment_p: float = 0.0, ada_target: float = 0.6, ada_kimg: float = 500, ada_interval: int = 1,
                 ada_interval_images: int = 8, ema_decay: float = EMA_DECAY,
                 augment_kwargs: Mapping[str, Any] | None = None):
        from .ada import ADA

        self.g, self.d = g, d
        self.g_ema = g_ema if g_ema is not None else copy.deepcopy(g)
        self.g_ema.eval().requires_grad_(False)
        self.device = next(g.parameters()).device
        self.r1, self.d_reg_every = float(r1), int(d_reg_every)
        self.path_regularize, self.g_reg_every = float(path_regularize), int(g_reg_every)
        self.path_batch_shrink, self.mixing = int(path_batch_shrink), float(mixing)
        self.ema_decay = float(ema_decay)
        self.opt = {"g": lazy_adam(g_params, lr, self.g_reg_every if self.path_regularize > 0 else 0),
                    "d": lazy_adam(d.parameters(), lr, self.d_reg_every if self.r1 > 0 else 0)}
        self.augment_kwargs = dict(augment_kwargs or {})
        self.augment_enabled, self.fixed_p = bool(augment), float(augment_p)
        self._ada_args = dict(target=ada_target, speed_kimg=ada_kimg, interval=ada_interval,
                              interval_images=ada_interval_images, **self.augment_kwargs)
        self.ada = ADA(**self._ada_args) if augment and augment_p <= 0 else None
        self.mean_path_length: torch.Tensor | float = 0.0

    # ------------------------------------------------------------------------------------ contract
    def networks(self) -> dict[str, nn.Module]:
        return {"g": self.g, "d": self.d, "g_ema": self.g_ema}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.opt

    def phases(self) -> list[Phase]:
        phases = [Phase("d", ["d"], self.d_loss)]
        if self.r1 > 0:
            phases.append(Phase("d", ["d"], self.r1_loss, every=self.d_reg_every))
        phases.append(Phase("g", ["g"], self.g_loss))
        if self.path_regularize > 0:
            phases.append(Phase("g", ["g"], self.path_loss, every=self.g_reg_every))
        return phases

    def d_loss(self, batch: Any, step: int):
        raise NotImplementedError

    def g_loss(self, batch: Any, step: int):
        raise NotImplementedError

    def path_loss(self, batch: Any, step: int):
        raise NotImplementedError

    # ------------------------------------------------------------------------------------ augmentation
    @property
    def p(self) -> float:
        """The current augmentation probability."""
        if not self.augment_enabled:
            return 0.0
        return self.ada.p if self.ada is not None else self.fixed_p

    def aug(self, x: torch.Tensor) -> torch.Tensor:
        from .ada import augment

        return augment(x, self.p, **self.augment_kwargs) if self.augment_enabled else x

    # ------------------------------------------------------------------------------------ shared losses
    def d_real(self, batch: Any, step: int) -> torch.Tensor:
        """The real images D sees in this batch."""
        return batch.to(self.device)

    def d_adversarial(self, real: torch.Tensor, fake: torch.Tensor, weight: float = 1.0):
        """weight × non-saturating logistic loss of D on augmented reals and fakes (reals augmented first, as the
        reference); feeds ADA with D(augmented reals)."""
        from ..losses import d_logistic_loss

        real_aug, fake_aug = self.aug(real), self.aug(fake.detach())
        fake_pred, real_pred = self.d(fake_aug), self.d(real_aug)
        loss = d_logistic_loss(real_pred, fake_pred) * weight
        if self.ada is not None:
            self.ada.accumulate(real_pred)
        return loss, {"d": loss.item(), "real_score": real_pred.mean().item(), "fake_score": fake_pred.mean().item()}

    def r1_loss(self, batch: Any, step: int):
        """Lazy R1 on D's (un-augmented) reals: γ/2 · R1 · every (+ 0·D(real)[0], so every output is used)."""
        from ..losses import d_r1_loss

        real = self.d_real(batch, step).detach().requires_grad_(True)
        real_pred = self.d(self.aug(real))
        r1 = d_r1_loss(real_pred, real)
        return self.r1 / 2 * r1 * self.d_reg_every + 0 * real_pred.reshape(-1)[0], {"r1": r1.item()}

    def path_batch(self, n: int) -> int:
        """Samples of the path-length phase for a batch of ``n``: n // path_batch_shrink (at least 1)."""
        return max(1, n // max(self.path_batch_shrink, 1))

    def path_length_penalty(self, fake: torch.Tensor, latents: torch.Tensor):
        """Lazy path-length regularisation of ``fake`` with respect to ``latents``: weight · every · penalty (the
        running mean path length moves); + 0·fake[0, 0, 0, 0] when the batch is shrunk, as the reference."""
        from ..losses import g_path_regularize

        penalty, self.mean_path_length, lengths = g_path_regularize(fake, latents, self.mean_path_length)
        loss = self.path_regularize * self.g_reg_every * penalty
        if self.path_batch_shrink:
            loss = loss + 0 * fake[0, 0, 0, 0]
        return loss, {"path": penalty.item(), "path_length": lengths.mean().item(),
                      "mean_path_length": float(self.mean_path_length)}

    def reset_ada(self) -> None:
        """The ADA controller as it starts (p = 0), when there is one."""
        from .ada import ADA

        if self.ada is not None:
            self.ada = ADA(**self._ada_args)

    # ------------------------------------------------------------------------------------ after a step
    def update_ema(self) -> None:
        """g_ema ← EMA of g (DualStyleGAN stages: of the extrinsic path's ``res`` only)."""
        accumulate(self.g_ema, self.g, self.ema_decay)

    def after_step(self, step: int) -> dict[str, float]:
        self.update_ema()
        if self.ada is not None:
            return self.ada.step()
        return {"ada_p": self.fixed_p} if self.augment_enabled else {}

    # ------------------------------------------------------------------------------------ checkpoint
    def state(self) -> dict[str, Any]:
        return {"mean_path_length": float(self.mean_path_length),
                "ada": self.ada.state() if self.ada is not None else None}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean_path_length = torch.tensor(float(state["mean_path_length"]), device=self.device)
        if self.ada is not None and state.get("ada") is not None:
            self.ada.load_state(state["ada"])
