"""DualStyleGAN (Yang et al., CVPR 2022, §3.2): StyleGAN2 plus an extrinsic style path.

Layers k = 0 … res_index (1–7 in the paper's counting, :attr:`DualStyleGANConfig.structure_rows`) are
**structure** layers: the intrinsic conv output is refined by a ModRes block driven by the structure code
r_k = T_s(extrinsic_k). The later layers (:attr:`DualStyleGANConfig.color_rows`) are **color** layers: the conv
reads w_k · T_c,k(extrinsic_k) + (1 − w_k) · intrinsic_k. Attribute names follow the official checkpoints and
the reference's ``model/dualstylegan.py`` (``style`` is T_s, ``res`` holds the ModRes blocks, the reference's
``AdaResBlock``, then the color transforms T_c).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .layers import ConvLayer, EqualLinear
from .stylegan2 import Generator, GeneratorConfig, map_rows, mapping_network


@dataclass
class DualStyleGANConfig(GeneratorConfig):
    res_index: int = 6  # last structure layer (ModRes); layers after it are color layers

    @property
    def n_structure(self) -> int:
        """Number of structure rows: layers 0 … res_index (7 at 1024², the paper's layers 1–7)."""
        return self.res_index // 2 * 2 + 1

    @property
    def n_color(self) -> int:
        """Number of color rows: the layers after res_index (11 at 1024², the paper's layers 8–18)."""
        return self.n_latent - self.n_structure

    @property
    def structure_rows(self) -> slice:
        """Rows of a style code that drive the ModRes blocks (paper §3.2: structure, layers 1–7)."""
        return slice(0, self.n_structure)

    @property
    def color_rows(self) -> slice:
        """Rows of a style code that drive the color transforms (paper §3.2: color, layers 8–18)."""
        return slice(self.n_structure, self.n_latent)


class AdaptiveInstanceNorm(nn.Module):
    """AdaIN: gamma * InstanceNorm(x) + beta, [gamma, beta] = Linear(style) (bias initialised to [1]*C + [0]*C)."""

    def __init__(self, channels: int, style_dim: int = 512):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.style = nn.Linear(style_dim, channels * 2)
        with torch.no_grad():
            self.style.bias[:channels] = 1
            self.style.bias[channels:] = 0

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(style)[:, :, None, None].chunk(2, 1)
        return gamma * self.norm(x) + beta


class ModRes(nn.Module):
    """Modulative residual block (paper §3.2): x + w · conv2(AdaIN₂(conv(AdaIN₁(x, s)), s)).

    The convs start at 1 % of their usual scale so that a fresh block is nearly the identity.
    """

    def __init__(self, channels: int, style_dim: int = 512):
        super().__init__()
        self.conv = ConvLayer(channels, channels, 3)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.norm = AdaptiveInstanceNorm(channels, style_dim)
        self.norm2 = AdaptiveInstanceNorm(channels, style_dim)
        with torch.no_grad():
            self.conv[0].weight.mul_(0.01)
            self.conv2[0].weight.mul_(0.01)

    def forward(self, x: torch.Tensor, structure: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        if weight == 0:
            return x
        h = self.conv2(self.norm2(self.conv(self.norm(x, structure)), structure))
        return x + h * weight


def color_transform(style_dim: int = 512) -> EqualLinear:
    """T_c: an EqualLinear initialised to the identity (plus 1 % noise)."""
    fc = EqualLinear(style_dim, style_dim)
    with torch.no_grad():
        fc.weight.copy_(torch.eye(style_dim) * math.sqrt(style_dim) + torch.randn(style_dim, style_dim) * 0.01)
    return fc


class DualStyleGAN(nn.Module):
    """The intrinsic path ``generator`` (StyleGAN2) plus the extrinsic path (``style`` = T_s, ``res``)."""

    def __init__(self, config: DualStyleGANConfig | None = None, **kwargs):
        super().__init__()
        config = config or DualStyleGANConfig(**kwargs)
        self.config = config
        n_struct_mlp = config.n_mlp - 6
        self.style = mapping_network(config.style_dim, n_struct_mlp)  # structure transform T_s
        self.generator = Generator(GeneratorConfig(
            size=config.size, channel_multiplier=config.channel_multiplier, channels=config.channels,
            blur_kernel=config.blur_kernel, style_dim=config.style_dim, n_mlp=config.n_mlp))
        self.res_index = config.res_index // 2 * 2
        ch = self.generator.channels
        res: list[nn.Module] = [ModRes(ch[4], config.style_dim)]  # conv1
        for i in range(3, self.generator.log_size + 1):
            for _ in range(2):
                if len(res) < config.n_structure:  # layer len(res) is a structure layer
                    res.append(ModRes(ch[2 ** i], config.style_dim))
                else:
                    res.append(color_transform(config.style_dim))
        res.append(color_transform(config.style_dim))  # the last ToRGB
        self.res = nn.ModuleList(res)
        self.size, self.style_dim = config.size, config.style_dim
        self.log_size, self.num_layers, self.n_latent = config.log_size, config.num_layers, config.n_latent

    # ----------------------------------------------------------------------------------------- codes
    def map_extrinsic(self, z_plus: torch.Tensor) -> torch.Tensor:
        """A stored Z+ exemplar code (B, L, 512) → W+ extrinsic code (the generator's mapping, row by row)."""
        return map_rows(self.generator.style, z_plus)

    def extrinsic_codes(self, exstyles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """W-space extrinsic code (B, 512) or (B, L, 512) → (structure codes r, color codes a), both (B, L, 512)."""
        if exstyles.ndim < 3:
            return (self.style(exstyles).unsqueeze(1).repeat(1, self.n_latent, 1),
                    exstyles.unsqueeze(1).repeat(1, self.n_latent, 1))
        return map_rows(self.style, exstyles), exstyles

    # ----------------------------------------------------------------------------------------- forward
    def forward(self, styles: Sequence[torch.Tensor], exstyles: torch.Tensor | None,
                return_latents: bool = False, return_feat: bool = False, inject_index: int | None = None,
                truncation: float = 1.0, truncation_latent: torch.Tensor | float | None = None,
                input_is_latent: bool = False, noise: Sequence[torch.Tensor | None] | None = None,
                randomize_noise: bool = True, z_plus_latent: bool = False, use_res: bool = True,
                fuse_index: int = 18, interp_weights: Sequence[float] | torch.Tensor | None = None,
                output_size: int | None = None):
        """The reference call: intrinsic ``styles`` (list of 1 or 2 codes), W-space extrinsic ``exstyles``.

        ``interp_weights`` is the per-layer vector w (length ≥ n_latent; w = 0 gives plain StyleGAN).
        Returns ``(image, latent or None)``, or ``(features, skip)`` after the last structure block when
        ``return_feat``. ``output_size`` (e.g. 256 or 512 of a 1024² model) stops the synthesis at that
        resolution's ToRGB (:meth:`Generator.synthesize`): the image is the full synthesis' skip there.
        """
        g = self.generator
        latent = g.latent_plus(styles, input_is_latent=input_is_latent, z_plus_latent=z_plus_latent,
                               truncation=truncation, truncation_latent=truncation_latent,
                               inject_index=inject_index)
        noise = g.resolve_noise(noise, randomize_noise)
        w = [1.0] * self.n_latent if interp_weights is None else [float(v) for v in interp_weights]
        if len(w) < self.n_latent:
            raise ValueError(f"interp_weights has {len(w)} entries; this model needs {self.n_latent}")
        if use_res and exstyles is None:
            raise ValueError("use_res=True needs an extrinsic style code (exstyles)")
        structure, color = self.extrinsic_codes(exstyles) if use_res else (None, None)
        n_structure = self.config.n_structure  # layers 0 … res_index: ModRes; the rest: color transforms

        def extrinsic(k: int) -> bool:
            return k <= fuse_index and (k > 0 or fuse_index > 0)

        def code(k: int) -> torch.Tensor:
            """The style row read by layer k: intrinsic, or blended with the color transform of the exemplar."""
            if k >= n_structure and extrinsic(k):
                return w[k] * self.res[k](color[:, k]) + (1 - w[k]) * latent[:, k]
            return latent[:, k]

        def refine(out: torch.Tensor, k: int) -> torch.Tensor:
            """Layer k's features, refined by its ModRes block when k is a structure layer."""
            return self.res[k](out, structure[:, k], w[k]) if k < n_structure and extrinsic(k) else out

        hooks = dict(code=code, refine=refine) if use_res else {}
        out = g.synthesize(latent, noise, features_at=self.res_index if return_feat else None,
                           output_size=output_size, per_sample_from=n_structure, **hooks)  # ModRes mixes no samples,
        # but it reads the batch's structure codes: split after it
        return out if return_feat else (out, latent if return_latents else None)
