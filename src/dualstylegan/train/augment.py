"""Adaptive discriminator augmentation (ADA; Karras et al., "Training Generative Adversarial Networks with Limited
Data", NeurIPS 2020), compact and differentiable, in plain PyTorch.

The style sets DualStyleGAN fine-tunes g′ on hold a few hundred images, so the discriminator sees every real and
every fake image through the same random augmentations, applied per sample with probability ``p``:

* geometric — x-flip, integer translation (reflect pad + crop), isotropic scaling and rotation
  (``F.affine_grid`` + ``F.grid_sample`` with reflection padding);
* color — brightness, contrast, saturation (images in [−1, 1], mid grey 0).

Every transform is differentiable with respect to the image, so the generator's gradient passes through it (the
"non-leaking" property needs p well below 1). :class:`ADA` tunes ``p`` from the overfitting heuristic
r_t = E[sign(D(real))]: up when r_t exceeds the target (0.6), down otherwise.

The random parameters are drawn on the CPU from torch's global generator (the training loop checkpoints it), so a
run is reproducible on any device. A sample that draws "no augmentation" is returned bit-exact.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

#: The largest p: p stays in [0, 1).
P_MAX = math.nextafter(1.0, 0.0)


def _gate(p: float, batch: int, value: torch.Tensor, neutral: float) -> torch.Tensor:
    """``value`` where a per-sample coin with probability ``p`` comes up, ``neutral`` elsewhere."""
    on = torch.rand(batch) < p
    return torch.where(on.view(-1, *([1] * (value.ndim - 1))), value, torch.full_like(value, neutral))


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1).to(device=x.device, dtype=x.dtype)


def augment(x: torch.Tensor, p: float, *, xflip: bool = True, translate: float = 0.125, scale_std: float = 0.2,
            rotate: bool = True, brightness_std: float = 0.2, contrast_std: float = 0.5,
            saturation_std: float = 1.0) -> torch.Tensor:
    """Augment a batch (B, C, H, W) in [−1, 1]: each transform applied per sample with probability ``p``.

    Strengths are those of StyleGAN2-ADA's ``bgc`` pipeline: translation uniform in ±``translate``·size pixels,
    scale 2^N(0, scale_std), rotation uniform in (−π, π], brightness +N(0, brightness_std), contrast
    ·2^N(0, contrast_std), saturation ·2^N(0, saturation_std). Set a strength to 0 / False to disable a transform.
    """
    if p <= 0:
        return x
    b, c, h, w = x.shape

    # ------------------------------------------------------------------ x-flip (half of the selected samples)
    if xflip:
        flip = (torch.rand(b) < p) & (torch.rand(b) < 0.5)
        if flip.any():
            x = torch.where(_bcast(flip, x).bool(), x.flip(3), x)

    # ------------------------------------------------------------------ integer translation
    if translate > 0:
        t = _gate(p, b, (torch.rand(b, 2) * 2 - 1) * translate, 0.0)
        tx, ty = (t[:, 0] * w).round().long(), (t[:, 1] * h).round().long()
        m = int(max(tx.abs().max(), ty.abs().max()))
        if m > 0:
            m = min(m, h - 1, w - 1)  # reflect padding needs pad < size
            tx, ty = tx.clamp(-m, m), ty.clamp(-m, m)
            padded = F.pad(x, (m, m, m, m), mode="reflect")
            rows = (torch.arange(h)[None] + m - ty[:, None]).to(x.device)  # (B, H)
            cols = (torch.arange(w)[None] + m - tx[:, None]).to(x.device)  # (B, W)
            idx = torch.arange(b, device=x.device)
            # advanced indices around a slice: the result is (B, H, W, C)
            x = padded[idx[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    # ------------------------------------------------------------------ isotropic scaling and rotation
    s = _gate(p, b, torch.exp2(torch.randn(b) * scale_std), 1.0) if scale_std > 0 else torch.ones(b)
    theta = _gate(p, b, (torch.rand(b) * 2 - 1) * math.pi, 0.0) if rotate else torch.zeros(b)
    warp = (s != 1) | (theta != 0)
    if warp.any():
        # affine_grid maps output coordinates to input ones: the inverse of "scale by s, then rotate by θ"
        cos, sin = torch.cos(theta) / s, torch.sin(theta) / s
        zero = torch.zeros(b)
        mat = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
        grid = F.affine_grid(mat.to(device=x.device, dtype=x.dtype), list(x.shape), align_corners=False)
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        x = torch.where(_bcast(warp, x).bool(), warped, x)

    # ------------------------------------------------------------------ color
    if brightness_std > 0:
        bright = _gate(p, b, torch.randn(b) * brightness_std, 0.0)
        if (bright != 0).any():
            x = x + _bcast(bright, x)
    if contrast_std > 0:
        contrast = _gate(p, b, torch.exp2(torch.randn(b) * contrast_std), 1.0)
        if (contrast != 1).any():
            x = x * _bcast(contrast, x)
    if saturation_std > 0 and c == 3:
        sat = _gate(p, b, torch.exp2(torch.randn(b) * saturation_std), 1.0)
        if (sat != 1).any():
            luma = x.mean(1, keepdim=True)  # the projection onto the grey axis (1, 1, 1)/√3
            x = torch.where(_bcast(sat != 1, x).bool(), luma + (x - luma) * _bcast(sat, x), x)
    return x


class ADA:
    """The augmentation probability p and its controller (Karras et al. 2020, §3).

    ``update(real_pred)`` (or ``accumulate`` once per micro-batch and ``step`` once per training step) gathers
    sign(D(real)) of the augmented reals; every ``interval`` steps r_t = mean sign is compared with ``target`` and
    p moves by sign(r_t − target) · (images seen) / (speed_kimg · 1000) — p could go from 0 to 1 in
    ``speed_kimg`` thousand images — or by a fixed ``adjust`` when one is given. p stays in [0, 1).
    Under ``torchrun`` the statistics are summed over ranks so that every rank keeps the same p.
    """

    def __init__(self, target: float = 0.6, speed_kimg: float = 500, interval: int = 4, adjust: float | None = None,
                 p: float = 0.0, **augment_kwargs: Any):
        if interval < 1 or speed_kimg <= 0:
            raise ValueError("ADA needs interval >= 1 and speed_kimg > 0")
        self.target, self.speed_kimg, self.interval, self.adjust = float(target), float(speed_kimg), interval, adjust
        self.p = min(max(float(p), 0.0), P_MAX)
        self.augment_kwargs = augment_kwargs
        self.r_t = 0.0          # the last measured overfitting heuristic
        self._signs = None      # running sum of sign(D(real)) (a tensor on D's device: no sync per step)
        self._count = None      # running number of predictions
        self._steps = 0         # steps since the last adjustment

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.p, **self.augment_kwargs)

    __call__ = augment

    @torch.no_grad()
    def accumulate(self, real_pred: torch.Tensor) -> None:
        """Add a micro-batch of D(augmented real) logits to the statistics."""
        signs = torch.sign(real_pred.detach().float()).sum()
        count = torch.tensor(float(real_pred.numel()), device=real_pred.device)
        if self._signs is None:
            self._signs, self._count = signs, count
        else:
            self._signs = self._signs.to(signs.device) + signs
            self._count = self._count.to(signs.device) + count

    def step(self) -> dict[str, float]:
        """One training step has ended: every ``interval`` steps adjust p. Returns {'ada_p', 'ada_rt'}."""
        self._steps += 1
        if self._steps >= self.interval and self._signs is not None:
            stats = torch.stack([self._signs, self._count.to(self._signs.device)])
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                if torch.distributed.get_backend() == "nccl":
                    stats = stats.to(torch.device("cuda", torch.cuda.current_device()))
                torch.distributed.all_reduce(stats)
            signs, count = stats.tolist()
            self.r_t = signs / max(count, 1.0)
            direction = float(math.copysign(1.0, self.r_t - self.target)) if self.r_t != self.target else 0.0
            delta = self.adjust if self.adjust is not None else count / (self.speed_kimg * 1000)
            self.p = min(max(self.p + direction * delta, 0.0), P_MAX)
            self._signs = self._count = None
            self._steps = 0
        return {"ada_p": self.p, "ada_rt": self.r_t}

    def update(self, real_pred: torch.Tensor) -> dict[str, float]:
        """``accumulate`` + ``step``: for a loop that calls D once per step."""
        self.accumulate(real_pred)
        return self.step()

    # ------------------------------------------------------------------ checkpoint
    def state(self) -> dict[str, Any]:
        return {"p": self.p, "r_t": self.r_t, "steps": self._steps,
                "signs": None if self._signs is None else float(self._signs),
                "count": None if self._count is None else float(self._count)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.p, self.r_t, self._steps = float(state["p"]), float(state["r_t"]), int(state["steps"])
        if state.get("signs") is None:
            self._signs = self._count = None
        else:
            self._signs, self._count = torch.tensor(float(state["signs"])), torch.tensor(float(state["count"]))
