"""The extrinsic style code sampler (paper §3.4 "random generation"; the reference's ``model/sampler/icp.py``).

Two small MLPs trained IMLE-style on a style's extrinsic codes map N(0, I₁₂₈) noise to new codes: ``structure``
gives the structure rows (7) and ``color`` the color rows (11) of a 1024² Z+ extrinsic code
(:attr:`DualStyleGANConfig.structure_rows` / ``color_rows``; ``sampler.pt['structure']`` and
``sampler.pt['color']``, keys ``lin1, bn1, lin2, bn2, lin_out`` as in the reference's ``_netT``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import NetConfig
from .dualstylegan import DualStyleGANConfig

#: Rows of the extrinsic code each sampler net produces for the official 1024² model (structure rows first,
#: then color rows): 7 and 11.
STRUCTURE_ROWS = DualStyleGANConfig().n_structure
COLOR_ROWS = DualStyleGANConfig().n_color


@dataclass
class SamplerConfig(NetConfig):
    """One sampler net: ``noise_dim`` → ``hidden_dim`` → ``hidden_dim`` → ``rows`` × ``style_dim``."""

    rows: int = STRUCTURE_ROWS
    noise_dim: int = 128
    style_dim: int = 512
    hidden_dim: int = 128


class StyleSampler(nn.Module):
    """Noise (B, noise_dim) → flat code (B, rows·style_dim); :meth:`sample_rows` gives (B, rows, style_dim).

    Linear (no bias) → BatchNorm1d → ReLU → Linear (no bias) → BatchNorm1d → ReLU → Linear (no bias).
    Use it in eval mode (BatchNorm running statistics), as the reference does at inference.
    """

    def __init__(self, config: SamplerConfig | None = None, **kwargs):
        super().__init__()
        config = config or SamplerConfig(**kwargs)
        self.config = config
        self.lin1 = nn.Linear(config.noise_dim, config.hidden_dim, bias=False)
        self.bn1 = nn.BatchNorm1d(config.hidden_dim)
        self.lin2 = nn.Linear(config.hidden_dim, config.hidden_dim, bias=False)
        self.bn2 = nn.BatchNorm1d(config.hidden_dim)
        self.lin_out = nn.Linear(config.hidden_dim, config.rows * config.style_dim, bias=False)
        self.relu = nn.ReLU()

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.lin1(noise)))
        x = self.relu(self.bn2(self.lin2(x)))
        return self.lin_out(x)

    def sample_rows(self, noise: torch.Tensor) -> torch.Tensor:
        """Noise (B, noise_dim) → code rows (B, rows, style_dim)."""
        return self(noise).reshape(noise.shape[0], self.config.rows, self.config.style_dim)

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """N(0, I) noise (n, noise_dim) on this net's device."""
        device = self.lin1.weight.device
        if generator is not None and generator.device != device:
            return torch.randn(n, self.config.noise_dim, generator=generator, device=generator.device).to(device)
        return torch.randn(n, self.config.noise_dim, generator=generator, device=device)


class ExtrinsicSampler(nn.Module):
    """Samples Z+ extrinsic style codes (B, 7 + 11, 512): structure rows, then color rows (``generate.py``).

    State dict: ``structure.*`` and ``color.*`` — ``sampler.pt['structure']`` / ``['color']`` under those prefixes.
    The codes are Z+ codes: map them row by row with the generator's mapping network before DualStyleGAN.
    """

    def __init__(self, structure: SamplerConfig | None = None, color: SamplerConfig | None = None):
        super().__init__()
        self.structure = StyleSampler(structure or SamplerConfig(rows=STRUCTURE_ROWS))
        self.color = StyleSampler(color or SamplerConfig(rows=COLOR_ROWS))
        if self.structure.config.style_dim != self.color.config.style_dim:
            raise ValueError("the structure and color samplers must have the same style_dim")

    @property
    def n_rows(self) -> int:
        return self.structure.config.rows + self.color.config.rows

    def sample_structure(self, noise: torch.Tensor) -> torch.Tensor:
        """Structure noise (B, noise_dim) → structure rows (B, 7, 512)."""
        return self.structure.sample_rows(noise)

    def sample_color(self, noise: torch.Tensor) -> torch.Tensor:
        """Color noise (B, noise_dim) → color rows (B, 11, 512)."""
        return self.color.sample_rows(noise)

    def forward(self, structure_noise: torch.Tensor, color_noise: torch.Tensor) -> torch.Tensor:
        """Given both noises → the full Z+ extrinsic code (B, 18, 512)."""
        return torch.cat([self.sample_structure(structure_noise), self.sample_color(color_noise)], dim=1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n random Z+ extrinsic codes (n, 18, 512); structure noise is drawn before color noise."""
        structure_noise = self.structure.noise(n, generator)
        color_noise = self.color.noise(n, generator)
        return self(structure_noise, color_noise)


__all__ = ["COLOR_ROWS", "ExtrinsicSampler", "STRUCTURE_ROWS", "SamplerConfig", "StyleSampler"]
